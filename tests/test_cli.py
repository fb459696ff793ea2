"""The ``euclidnet`` command line: help, train / evaluate / md end to end, config errors, demo kept."""

import json

import pytest
import yaml
from ase.io import write
from test_train_support import make_frames, tiny_config

from euclidnet.cli import build_parser, main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A config and a 1-epoch run of test_pair on 10 EMT frames, via ``euclidnet train``."""
    tmp = tmp_path_factory.mktemp("cli")
    data = tmp / "d.extxyz"
    write(data, make_frames(10, seed=2), format="extxyz")
    cfg = tiny_config(tmp, data, max_epochs=2)
    cfg["data"]["split"]["test_fraction"] = 0.2
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--quiet"]) == 0
    return tmp, path, data


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "train", "evaluate", "md"):
        assert cmd in out
    for cmd in ("train", "evaluate", "md"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "usage: euclidnet " + cmd in capsys.readouterr().out


def test_demo_subcommand_unchanged():
    args = build_parser().parse_args(["demo", "--list"])
    assert args.command == "demo" and args.list


def test_train_writes_run_directory(trained):
    tmp, _, _ = trained
    run = tmp / "run"
    for name in ("last.ckpt", "best.ckpt", "log.csv", "learning_curves.png", "parity_valid.png", "parity_test.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test_metrics"]) == {"energy", "forces", "stress"}


def test_evaluate_prints_table(trained, capsys, tmp_path):
    tmp, _, data = trained
    out_json = tmp_path / "m.json"
    assert main(["evaluate", str(tmp / "run" / "best.ckpt"), str(data), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "MAE" in out and "forces" in out and "eV/Å" in out
    m = json.loads(out_json.read_text())
    assert m["forces"]["n"] == 10 * 8 * 3 and m["forces"]["rmse"] >= m["forces"]["mae"] > 0


def test_md_nve_reports_drift(trained, capsys, tmp_path):
    tmp, _, data = trained
    traj = tmp_path / "md.traj"
    rep = tmp_path / "md.json"
    args = [
        "md",
        str(tmp / "run" / "best.ckpt"),
        str(data),
        "--steps",
        "40",
        "--timestep",
        "1",
        "--temperature",
        "300",
        "--trajectory",
        str(traj),
        "--sample-every",
        "5",
        "--json",
        str(rep),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "energy drift" in out and "eV/atom/ps" in out
    report = json.loads(rep.read_text())
    from ase.io import read

    frames = read(traj, ":")
    assert len(frames) == 9 and report["steps"] == 40
    # NVE with a smooth potential and a 1 fs step conserves energy to well below the thermal energy scale.
    assert abs(report["energy_drift_eV_per_atom_per_ps"]) < 0.05
    assert (
        main(
            [
                "md",
                str(tmp / "run" / "best.ckpt"),
                str(data),
                "--steps",
                "10",
                "--thermostat",
                "langevin",
                "--trajectory",
                str(tmp_path / "nvt.extxyz"),
            ]
        )
        == 0
    )
    assert len(read(tmp_path / "nvt.extxyz", ":")) == 2  # steps 0 and 10


def test_resume_via_cli(trained, capsys):
    tmp, path, _ = trained
    assert main(["train", str(path), "--resume", "--quiet", "--set", "training.max_epochs=3"]) == 0
    lines = (tmp / "run" / "log.csv").read_text().splitlines()
    assert len(lines) == 1 + 3


def test_config_errors_are_reported(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"train": "x.xyz"}, "model": {"name": "nequip"}, "trainig": {}}))
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'trainig'" in err and "did you mean 'training'" in err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_clean_error(tmp_path, capsys):
    ck = tmp_path / "x.ckpt"
    ck.write_bytes(b"EUCLCKPT" + b"\0" * 50)
    assert main(["evaluate", str(ck), "whatever.xyz"]) == 2
    assert "truncated or damaged checkpoint" in capsys.readouterr().err


def test_shipped_config_and_dataset_agree():
    from pathlib import Path

    from euclidnet.data import SpeciesMap, atoms_to_graph, label_specs_from_config, load_config, read_atoms

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "nequip_emt.yaml")
    assert cfg.model.name == "nequip" and Path(cfg.data.train).is_file()
    assert Path(cfg.data.train).stat().st_size < 5e6
    frames = read_atoms(cfg.data.train, index=":3")
    specs = label_specs_from_config(cfg.data)
    for i, a in enumerate(frames):
        g = atoms_to_graph(a, SpeciesMap(cfg.data.species), specs, frame=i)
        assert set(g.labels) == {"energy", "forces", "stress"} and g.num_nodes in (31, 32)
        assert bool(g.pbc.all())
