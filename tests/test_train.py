"""Training loop: loss decreases, exact resume, crash-safe checkpoints, scaling wrapper, EMA."""

import os

import pytest
import torch
from ase.io import write
from test_train_support import PairEAM, make_frames, tiny_config

from euclidnet.data import config_from_dict
from euclidnet.graph.data import AtomicGraph
from euclidnet.train import EMA, CheckpointError, ScaledPotential, Trainer, load_checkpoint, save_checkpoint
from euclidnet.train.checkpoint import MAGIC


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.extxyz"
    write(path, make_frames(12, seed=0, charges=True), format="extxyz")
    return path


def _trainer(tmp_path, data_file, max_steps=None, resume=False, **training):
    cfg = config_from_dict(tiny_config(tmp_path, data_file, **training))
    return Trainer(cfg, resume=resume, max_steps=max_steps, final_eval=False, verbose=False)


def test_training_lowers_the_loss(tmp_path, data_file):
    tr = _trainer(tmp_path, data_file, max_epochs=6, scheduler={"name": "none"})
    before = tr.validate()["valid_loss"]
    tr.fit()
    after = tr.validate()["valid_loss"]
    assert after < 0.5 * before, (before, after)
    assert (tmp_path / "run" / "last.ckpt").is_file() and (tmp_path / "run" / "best.ckpt").is_file()
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and rows[0].startswith("epoch,step,lr,train_loss")


def test_generic_per_atom_label_is_trained(tmp_path, data_file):
    raw = tiny_config(tmp_path, data_file, max_epochs=3, scheduler={"name": "none"})
    raw["data"]["labels"] = {"charges": {"key": "REF_charges", "irreps": "0e", "per_atom": True}}
    raw["model"]["kwargs"]["charges"] = True
    raw["training"]["loss_weights"] = {"energy": 1.0, "forces": 1.0, "charges": 5.0}
    tr = Trainer(config_from_dict(raw), final_eval=True, verbose=False)
    before = tr.validate()["valid_charges_mae"]
    summary = tr.fit()
    assert summary["valid_metrics"]["charges"]["mae"] < before
    assert (tmp_path / "run" / "parity_valid.png").stat().st_size > 1000
    assert (tmp_path / "run" / "learning_curves.png").stat().st_size > 1000


def _params(tr):
    return {k: v.clone() for k, v in tr.model.state_dict().items()}


@pytest.mark.parametrize("scheduler", ["plateau", "cosine"])
def test_resume_is_bit_identical(tmp_path, data_file, scheduler):
    # 9 train frames, batch 4 -> 2 steps per epoch; stop at step 3 (mid-epoch) and resume to step 7.
    kw = {"max_epochs": 10, "scheduler": {"name": scheduler, "patience": 0, "warmup_steps": 2}}
    full = _trainer(tmp_path / "a", data_file, max_steps=7, **kw)
    full.fit()
    part = _trainer(tmp_path / "b", data_file, max_steps=3, **kw)
    part.fit()
    assert part.global_step == 3 and part.step_in_epoch == 1
    resumed = _trainer(tmp_path / "b", data_file, max_steps=7, resume=True, **kw)
    assert resumed.global_step == 3
    resumed.fit()
    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k, v in full.ema.shadow.items():
        assert torch.equal(v, resumed.ema.shadow[k]), k
    assert full.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]
    assert [r["valid_loss"] for r in full.history] == [r["valid_loss"] for r in resumed.history]
    # The parameters did change (the comparison is not trivially true).
    init = _trainer(tmp_path / "c", data_file, max_steps=0)
    assert not torch.equal(_params(init)["model.pair_w"], a["model.pair_w"])


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, data_file):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        _trainer(tmp_path, data_file, resume=True)


def test_truncated_or_corrupt_checkpoint_detected(tmp_path):
    path = tmp_path / "c.ckpt"
    save_checkpoint({"w": torch.arange(1000.0), "step": 1}, path)
    raw = path.read_bytes()
    assert raw.startswith(MAGIC)
    (tmp_path / "trunc.ckpt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=r"trunc.ckpt: truncated or damaged checkpoint: header says \d+"):
        load_checkpoint(tmp_path / "trunc.ckpt")
    (tmp_path / "short.ckpt").write_bytes(raw[:10])
    with pytest.raises(CheckpointError, match="truncated checkpoint"):
        load_checkpoint(tmp_path / "short.ckpt")
    flipped = bytearray(raw)
    flipped[-20] ^= 0xFF
    (tmp_path / "flip.ckpt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(tmp_path / "flip.ckpt")
    (tmp_path / "other.ckpt").write_bytes(b"not a checkpoint at all, just some text" * 3)
    with pytest.raises(CheckpointError, match="bad magic"):
        load_checkpoint(tmp_path / "other.ckpt")


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    real_fdopen = os.fdopen

    class Crashing:
        """A file object that writes half of the data and then dies (like a killed process)."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()
            return False

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError("simulated crash while writing")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Crashing(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    back = load_checkpoint(path)
    assert back["step"] == 1 and torch.equal(back["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "temporary file left behind"


def test_scaled_potential_applies_scale_and_reference_energies():
    torch.manual_seed(0)
    inner = PairEAM(num_types=2, r_max=3.0).double()
    cell = torch.eye(3, dtype=torch.float64) * 4.0
    g = AtomicGraph(
        pos=torch.rand(5, 3, dtype=torch.float64) * 4, atom_types=torch.tensor([0, 1, 1, 0, 1]), cell=cell
    ).with_edges(3.0)
    pot = ScaledPotential(inner, [-1.0, -3.0], scale=2.5).double()
    raw = inner(g, compute_forces=True, compute_stress=True)
    out = pot(g, compute_forces=True, compute_stress=True)
    torch.testing.assert_close(out["energy"], 2.5 * raw["energy"] + (2 * -1.0 + 3 * -3.0))
    torch.testing.assert_close(out["forces"], 2.5 * raw["forces"])
    torch.testing.assert_close(out["stress"], 2.5 * raw["stress"])
    with pytest.raises(ValueError, match="scale must be > 0"):
        ScaledPotential(inner, [0.0, 0.0], scale=0.0)


def test_ema_average():
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = EMA(lin, decay=0.5)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin)  # warm-up decay min(0.5, 2/11) = 2/11
    assert float(ema.shadow["weight"]) == pytest.approx(1 - 2 / 11)
    target = torch.nn.Linear(1, 1, bias=False)
    ema.copy_to(target)
    assert float(target.weight.detach()) == pytest.approx(1 - 2 / 11)


def test_float32_training_runs(tmp_path, data_file):
    raw = tiny_config(tmp_path, data_file, max_epochs=1)
    raw["dtype"] = "float32"
    tr = Trainer(config_from_dict(raw), final_eval=False, verbose=False)
    tr.fit()
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())
    assert torch.isfinite(torch.tensor(tr.history[-1]["valid_loss"]))


def test_model_missing_declared_output_is_a_clear_error(tmp_path, data_file):
    raw = tiny_config(tmp_path, data_file)
    raw["data"]["labels"] = {"charges": {"key": "REF_charges", "irreps": "0e", "per_atom": True}}
    raw["training"]["loss_weights"] = {"energy": 1.0, "charges": 1.0}  # test_pair without charges=True
    with pytest.raises(ValueError, match=r"training.loss_weights.charges: model 'test_pair' does not output"):
        Trainer(config_from_dict(raw), final_eval=False, verbose=False)
