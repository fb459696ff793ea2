"""Reading extended XYZ into AtomicGraphs, splits, statistics, batching and configs."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from euclidnet.data import (
    AtomicDataset,
    ConfigError,
    LabelSpec,
    MissingLabelError,
    SpeciesMap,
    compute_statistics,
    config_from_dict,
    label_specs_from_config,
    make_loader,
    split_indices,
)
from euclidnet.graph.data import collate


def _frames(seed=0):
    rng = np.random.default_rng(seed)
    out = []
    # Periodic, partly periodic and open frames of different sizes and species.
    for i, (n, pbc) in enumerate([(5, True), (3, (True, True, False)), (4, False), (6, True)]):
        symbols = rng.choice(["H", "C", "O"], size=n).tolist()
        cell = np.diag(rng.uniform(4.0, 6.0, 3)) + rng.uniform(-0.5, 0.5, (3, 3)) if pbc is not False else None
        atoms = Atoms(symbols, positions=rng.uniform(0, 4, (n, 3)), cell=cell, pbc=pbc)
        stress = rng.normal(size=6)
        atoms.calc = SinglePointCalculator(
            atoms, energy=float(rng.normal()), forces=rng.normal(size=(n, 3)), stress=stress
        )
        atoms.info["dipole_ref"] = rng.normal(size=3)
        atoms.info["polar"] = rng.normal(size=6)
        atoms.info["mol_id"] = i % 2
        atoms.arrays["q"] = rng.normal(size=n)
        out.append(atoms)
    return out


def _specs():
    return [
        LabelSpec("energy", "energy", 1, False, "energy"),
        LabelSpec("forces", "forces", 3, True, "forces"),
        LabelSpec("stress", "stress", 9, False, "stress"),
        LabelSpec("dipole", "dipole_ref", 3, False),
        LabelSpec("polarizability", "polar", 6, False),
        LabelSpec("charges", "q", 1, True),
    ]


def _voigt_to_3x3(v):
    xx, yy, zz, yz, xz, xy = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roundtrip_through_ase_extxyz(tmp_path, dtype):
    frames = _frames()
    path = tmp_path / "d.extxyz"
    write(path, frames, format="extxyz")
    species = SpeciesMap(["H", "C", "O"])
    ds, sp = AtomicDataset.from_file(path, species, _specs(), dtype=dtype)
    assert sp is species and len(ds) == len(frames)
    tol = {"rtol": 0, "atol": 1e-6 if dtype == torch.float32 else 1e-12}
    # The file holds positions with 8 decimals: compare with what ASE itself reads back, and with the
    # original frames at the file's precision.
    from ase.io import read

    back = read(path, ":")
    for orig, a in zip(frames, back):
        np.testing.assert_allclose(a.positions, orig.positions, atol=1e-8)
        np.testing.assert_allclose(a.get_forces(), orig.get_forces(), atol=1e-8)
    for a, g in zip(back, ds):
        assert g.pos.dtype == dtype
        np.testing.assert_allclose(g.pos.double().numpy(), a.positions, **tol)
        assert g.atom_types.tolist() == [["H", "C", "O"].index(s) for s in a.get_chemical_symbols()]
        if a.pbc.any():
            np.testing.assert_allclose(g.cell[0].double().numpy(), a.cell[:], **tol)
            assert g.pbc[0].tolist() == a.pbc.tolist()
        else:
            assert g.cell is None
        res = a.calc.results
        np.testing.assert_allclose(g.labels["energy"].double().numpy(), [res["energy"]], **tol)
        np.testing.assert_allclose(g.labels["forces"].double().numpy(), res["forces"], **tol)
        np.testing.assert_allclose(g.labels["stress"][0].double().numpy(), a.get_stress(voigt=False), **tol)
        np.testing.assert_allclose(a.get_stress(voigt=False), _voigt_to_3x3(res["stress"]), atol=0)
        np.testing.assert_allclose(g.labels["dipole"].double().numpy(), a.info["dipole_ref"][None], **tol)
        np.testing.assert_allclose(g.labels["polarizability"].double().numpy(), a.info["polar"][None], **tol)
        np.testing.assert_allclose(g.labels["charges"].double().numpy(), a.arrays["q"][:, None], **tol)


@pytest.mark.parametrize("ext,module", [(".gz", "gzip"), (".bz2", "bz2"), (".xz", "lzma")])
def test_compressed_files_read_like_plain_ones(tmp_path, ext, module):
    """A compressed extxyz gives the same frames (and index slices) as the plain file."""
    import importlib

    from euclidnet.data.extxyz import read_atoms

    plain = tmp_path / "d.extxyz"
    write(plain, _frames(), format="extxyz")
    packed = tmp_path / f"d.extxyz{ext}"
    with importlib.import_module(module).open(packed, "wb") as f:
        f.write(plain.read_bytes())
    for index in (":", "1:3", "-1"):
        want, got = read_atoms(plain, index), read_atoms(packed, index)
        assert len(got) == len(want) > 0
        for a, b in zip(got, want):
            assert np.array_equal(a.positions, b.positions) and np.array_equal(a.numbers, b.numbers)
            assert np.array_equal(a.cell, b.cell) and np.array_equal(a.pbc, b.pbc)
            assert a.get_potential_energy() == b.get_potential_energy()
            assert np.array_equal(a.get_forces(), b.get_forces()) and np.array_equal(a.arrays["q"], b.arrays["q"])


def test_keys_in_info_and_arrays_and_virial(tmp_path):
    atoms = Atoms("Cu4", positions=[[0, 0, 0], [1.8, 1.8, 0], [1.8, 0, 1.8], [0, 1.8, 1.8]], cell=[3.6] * 3, pbc=True)
    atoms.positions += np.random.default_rng(0).normal(0, 0.05, (4, 3))
    atoms.calc = EMT()
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)
    plain = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=True)
    plain.info["REF_energy"] = e
    plain.info["REF_virial"] = (-s * atoms.get_volume()).reshape(9)
    plain.arrays["REF_forces"] = f
    path = tmp_path / "ref.xyz"
    write(path, [plain], format="extxyz")
    cfg = config_from_dict(
        {
            "data": {
                "train": str(path),
                "energy_key": "REF_energy",
                "forces_key": "REF_forces",
                "virial_key": "REF_virial",
            },
            "model": {"name": "x"},
        }
    )
    ds, species = AtomicDataset.from_file(path, None, label_specs_from_config(cfg.data))
    g = ds[0]
    assert species.symbols == ["Cu"]
    np.testing.assert_allclose(g.labels["energy"].numpy(), [e], rtol=1e-12)
    np.testing.assert_allclose(g.labels["forces"].numpy(), f, rtol=0, atol=1e-8)  # 8 decimals in the file
    np.testing.assert_allclose(g.labels["stress"][0].numpy(), s, rtol=1e-8, atol=1e-12)


def test_missing_label_names_frame_and_key(tmp_path):
    frames = _frames()
    del frames[2].info["dipole_ref"]
    path = tmp_path / "d.extxyz"
    write(path, frames, format="extxyz")
    with pytest.raises(MissingLabelError, match=r"frame 2: .*'dipole'.*'dipole_ref'"):
        AtomicDataset.from_file(path, SpeciesMap(["H", "C", "O"]), _specs())


def test_wrong_label_size_and_unknown_species(tmp_path):
    frames = _frames()
    path = tmp_path / "d.extxyz"
    write(path, frames, format="extxyz")
    with pytest.raises(ValueError, match=r"frame 0: label 'dipole'.*expected 1 x 5"):
        AtomicDataset.from_file(path, SpeciesMap(["H", "C", "O"]), [LabelSpec("dipole", "dipole_ref", 5, False)])
    with pytest.raises(ValueError, match=r"species 'O' is not in the species map"):
        AtomicDataset.from_file(path, SpeciesMap(["H", "C"]), [])


def test_random_and_group_splits():
    tr, va, te = split_indices(50, 0.2, 0.1, seed=4)
    assert sorted(tr + va + te) == list(range(50)) and len(va) == 10 and len(te) == 5
    assert (tr, va, te) == split_indices(50, 0.2, 0.1, seed=4)
    assert (tr, va, te) != split_indices(50, 0.2, 0.1, seed=5)
    groups = [i // 5 for i in range(50)]  # 10 groups of 5
    tr, va, te = split_indices(50, 0.2, 0.1, seed=0, groups=groups)
    assert sorted(tr + va + te) == list(range(50))
    side = {}
    for name, idx in (("tr", tr), ("va", va), ("te", te)):
        for i in idx:
            assert side.setdefault(groups[i], name) == name, "a group is split across sides"
    assert len(va) >= 10 and len(te) >= 5


def test_statistics_recover_species_energies_and_force_rms():
    rng = np.random.default_rng(0)
    graphs = []
    true_ref = np.array([-1.5, -4.0])
    all_forces = []
    for _ in range(20):
        n = int(rng.integers(2, 7))
        types = torch.tensor(rng.integers(0, 2, n))
        forces = torch.tensor(rng.normal(0, 0.3, (n, 3)))
        all_forces.append(forces.numpy())
        energy = torch.tensor([float(true_ref[types.numpy()].sum())])
        from euclidnet.graph.data import AtomicGraph

        graphs.append(
            AtomicGraph(
                pos=torch.randn(n, 3, dtype=torch.float64),
                atom_types=types,
                labels={"energy": energy, "forces": forces},
            )
        )
    stats = compute_statistics(AtomicDataset(graphs), 2)
    np.testing.assert_allclose(stats.species_energies, true_ref, atol=1e-10)
    rms = np.sqrt(np.mean(np.concatenate(all_forces) ** 2))
    assert stats.scale == pytest.approx(rms, rel=1e-12)
    assert stats.label_rms["energy"] == pytest.approx(0.0, abs=1e-10)


def test_loader_batches_graphs_of_different_sizes(tmp_path):
    frames = _frames()
    path = tmp_path / "d.extxyz"
    write(path, frames, format="extxyz")
    ds, _ = AtomicDataset.from_file(path, SpeciesMap(["H", "C", "O"]), _specs(), r_max=2.5)
    batches = list(make_loader(ds, batch_size=3))
    assert [b.num_graphs for b in batches] == [3, 1]
    b = batches[0]
    assert b.num_nodes == sum(len(a) for a in frames[:3])
    assert b.labels["energy"].shape == (3,) and b.labels["charges"].shape == (b.num_nodes, 1)
    # Precomputed per-structure edges equal edges computed on the whole batch.
    direct = collate([g for g in list(ds)[:3]]).with_edges(2.5, recompute=True)
    key = lambda g: sorted(map(tuple, torch.cat([g.edge_index.T, g.cell_shifts], 1).tolist()))  # noqa: E731
    assert key(b) == key(direct) and b.num_edges > 0


def test_on_disk_neighbour_cache(tmp_path, monkeypatch):
    frames = _frames()
    path = tmp_path / "d.extxyz"
    write(path, frames, format="extxyz")
    sp = SpeciesMap(["H", "C", "O"])
    ds1, _ = AtomicDataset.from_file(path, sp, _specs(), r_max=2.5, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1
    import euclidnet.data.dataset as dsmod

    def boom(*a, **k):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(dsmod, "read_atoms", boom)
    ds2, _ = AtomicDataset.from_file(path, sp, _specs(), r_max=2.5, cache_dir=tmp_path / "cache")
    for a, b in zip(ds1, ds2):
        assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.pos, b.pos)
        assert a.labels.keys() == b.labels.keys()
    # Another cutoff is another cache entry.
    monkeypatch.undo()
    AtomicDataset.from_file(path, sp, _specs(), r_max=3.0, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_config_errors_name_key_and_suggest():
    base = {"data": {"train": "x.xyz"}, "model": {"name": "nequip"}}
    with pytest.raises(ConfigError, match=r"unknown config key 'training.learning_rate'"):
        config_from_dict({**base, "training": {"learning_rate": 1e-3}})
    with pytest.raises(ConfigError, match=r"did you mean 'batch_size'"):
        config_from_dict({**base, "training": {"batchsize": 4}})
    with pytest.raises(
        ConfigError, match=r"training.scheduler.name: 'cosin'.*did you mean 'cosine'.*allowed: plateau, cosine"
    ):
        config_from_dict({**base, "training": {"scheduler": {"name": "cosin"}}})
    with pytest.raises(ConfigError, match=r"dtype: 'float16' is not allowed.*float32, float64"):
        config_from_dict({**base, "dtype": "float16"})
    with pytest.raises(ConfigError, match=r"training.batch_size: expected an integer"):
        config_from_dict({**base, "training": {"batch_size": "eight"}})
    with pytest.raises(ConfigError, match=r"training.loss_weights.dipol: no such label; did you mean 'dipole'"):
        config_from_dict(
            {
                "data": {"train": "x", "labels": {"dipole": {"key": "mu", "irreps": "1o"}}},
                "model": {"name": "m"},
                "training": {"loss_weights": {"dipol": 1.0}},
            }
        )
    with pytest.raises(ConfigError, match=r"data.labels.dipole.irreps: cannot parse"):
        config_from_dict(
            {"data": {"train": "x", "labels": {"dipole": {"key": "mu", "irreps": "1q"}}}, "model": {"name": "m"}}
        )
    with pytest.raises(ConfigError, match=r"missing required config key 'model'"):
        config_from_dict({"data": {"train": "x"}})
    cfg = config_from_dict({**base, "training": {"lr": "5e-3"}})  # YAML 1.1 reads 5e-3 as a string
    assert cfg.training.lr == 5e-3
