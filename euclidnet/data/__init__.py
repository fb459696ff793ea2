"""Data: extended XYZ reading, datasets with cached neighbour lists, splits, statistics and configs.

``euclidnet/data/shapes.py`` (synthetic point-cloud shapes) lives here too but is imported on its own.
"""

from .config import Config, ConfigError, config_from_dict, config_to_dict, load_config
from .dataset import AtomicDataset, DatasetStatistics, compute_statistics, make_loader, split_indices
from .extxyz import LabelSpec, MissingLabelError, SpeciesMap, atoms_to_graph, label_specs_from_config, read_atoms

__all__ = [
    "Config",
    "ConfigError",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "AtomicDataset",
    "DatasetStatistics",
    "compute_statistics",
    "make_loader",
    "split_indices",
    "LabelSpec",
    "MissingLabelError",
    "SpeciesMap",
    "atoms_to_graph",
    "label_specs_from_config",
    "read_atoms",
]
