"""EuclidNetCalculator: forces and stress equal ASE finite differences; checkpoints; molecules."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.io import write
from test_train_support import PairEAM, make_frames, tiny_config

from euclidnet.calculators import EuclidNetCalculator
from euclidnet.data import config_from_dict
from euclidnet.train import ScaledPotential, Trainer


def _model():
    torch.manual_seed(0)
    inner = PairEAM(num_types=2, r_max=4.0)
    with torch.no_grad():  # larger weights than the default init: forces well above FD noise
        inner.pair_w.mul_(10)
        inner.emb_w.mul_(10)
    return ScaledPotential(inner, [-3.5, -3.8], scale=1.3)


def _alloy(seed=0):
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.set_chemical_symbols(["Au" if rng.random() < 0.4 else "Cu" for _ in atoms])
    atoms.set_cell(atoms.cell @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
    atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
    return atoms


def test_forces_and_stress_equal_finite_differences_periodic():
    atoms = _alloy()
    atoms.calc = EuclidNetCalculator(model=_model(), species=["Cu", "Au"], dtype="float64")
    f = atoms.get_forces()
    s = atoms.get_stress()
    fd_f = calculate_numerical_forces(atoms, eps=1e-5)
    fd_s = calculate_numerical_stress(atoms, eps=1e-6)
    assert np.abs(f).max() > 0.05 and np.abs(s).max() > 1e-3
    np.testing.assert_allclose(f, fd_f, atol=1e-7 * max(1, np.abs(f).max()), rtol=1e-6)
    np.testing.assert_allclose(s, fd_s, atol=1e-7, rtol=1e-5)


def test_molecule_forces_and_no_stress():
    rng = np.random.default_rng(1)
    atoms = Atoms("Cu3Au2", positions=rng.uniform(0, 3.5, (5, 3)))
    atoms.calc = EuclidNetCalculator(model=_model(), species=["Cu", "Au"])
    f = atoms.get_forces()
    np.testing.assert_allclose(f, calculate_numerical_forces(atoms, eps=1e-5), atol=1e-7 * max(1, np.abs(f).max()))
    np.testing.assert_allclose(f.sum(0), 0, atol=1e-10)  # translation invariance
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        atoms.get_stress()


def test_energy_is_invariant_and_float32_close_to_float64():
    atoms = _alloy(2)
    calc64 = EuclidNetCalculator(model=_model(), species=["Cu", "Au"], dtype="float64")
    calc32 = EuclidNetCalculator(model=_model(), species=["Cu", "Au"], dtype="float32")
    atoms.calc = calc64
    e = atoms.get_potential_energy()
    rot = atoms.copy()
    R = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    rot.set_cell(rot.cell @ R.T, scale_atoms=False)
    rot.positions = rot.positions @ R.T
    rot.calc = calc64
    assert rot.get_potential_energy() == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(rot.get_forces(), atoms.get_forces() @ R.T, atol=1e-10)
    atoms32 = atoms.copy()
    atoms32.calc = calc32
    assert atoms32.get_potential_energy() == pytest.approx(e, rel=1e-5)


def test_calculator_from_checkpoint_matches_training_model(tmp_path):
    data = tmp_path / "d.extxyz"
    write(data, make_frames(8, seed=1), format="extxyz")
    tr = Trainer(config_from_dict(tiny_config(tmp_path, data, max_epochs=1)), final_eval=False, verbose=False)
    tr.fit()
    calc = EuclidNetCalculator(checkpoint=tmp_path / "run" / "last.ckpt")
    atoms = _alloy(3)
    atoms.calc = calc
    e = atoms.get_potential_energy()
    # Same numbers from the trainer's EMA model evaluated directly.
    calc2 = EuclidNetCalculator(model=tr._ema_model(), species=tr.species)
    atoms2 = atoms.copy()
    atoms2.calc = calc2
    assert e == pytest.approx(atoms2.get_potential_energy(), rel=1e-12)
    with pytest.raises(ValueError, match="exactly one of"):
        EuclidNetCalculator()
    with pytest.raises(ValueError, match="species 'Ag' is not in the species map"):
        bad = Atoms("Ag2", positions=[[0, 0, 0], [0, 0, 2.5]])
        bad.calc = calc
        bad.get_potential_energy()
