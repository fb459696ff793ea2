"""Symmetry tools: point-group detection, Curie's principle checks, symmetry breaking by input gradients."""

from .breaking import (
    BreakingResult,
    PointCloudUpdate,
    square_to_rectangle,
    symmetrize_displacement,
    symmetry_breaking_direction,
)
from .curie import CurieResult, curie_check, fixed_subspace_dim, fixed_subspace_projector
from .molecules import (
    MOLECULES,
    ammonia,
    benzene,
    bromochlorofluoromethane,
    methane,
    sulfur_hexafluoride,
    water,
)
from .point_groups import PointGroupResult, classify_operations, detect_point_group, symmetry_operations_valid

__all__ = [
    "PointGroupResult",
    "detect_point_group",
    "classify_operations",
    "symmetry_operations_valid",
    "CurieResult",
    "curie_check",
    "fixed_subspace_dim",
    "fixed_subspace_projector",
    "BreakingResult",
    "PointCloudUpdate",
    "symmetrize_displacement",
    "symmetry_breaking_direction",
    "square_to_rectangle",
    "MOLECULES",
    "methane",
    "sulfur_hexafluoride",
    "water",
    "ammonia",
    "benzene",
    "bromochlorofluoromethane",
]
