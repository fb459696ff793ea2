"""Data-parallel training under torchrun (gloo on CPU) gives the single-process parameters."""

import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from ase.io import write
from test_train_support import make_frames, tiny_config
from torch.utils.data import DistributedSampler

from euclidnet.data import config_from_dict
from euclidnet.train import Trainer, load_checkpoint


def test_rank_shards_make_up_the_global_batch():
    """What the trainer relies on: with drop_last, rank r's local batch k over all r is global batch k."""
    n, global_batch = 23, 6
    data = list(range(n))
    single = list(DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=7, drop_last=True))
    single_batches = [set(single[i : i + global_batch]) for i in range(0, n - n % global_batch, global_batch)]
    for world in (2, 3):
        local = global_batch // world
        shards = [
            list(DistributedSampler(data, num_replicas=world, rank=r, shuffle=True, seed=7, drop_last=True))
            for r in range(world)
        ]
        nb = len(shards[0]) // local
        assert nb == len(single_batches)
        for k in range(nb):
            union = set().union(*(s[k * local : (k + 1) * local] for s in shards))
            assert union == single_batches[k]


def _run(cmd, cwd, timeout):
    """Run ``cmd`` in its own process group; on timeout kill the whole group (torchrun and its workers)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s:\n{out.decode(errors='replace')[-3000:]}")
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path):
    data = tmp_path / "d.extxyz"
    write(data, make_frames(14, seed=5), format="extxyz")
    # 11 training frames, global batch 4 -> 2 steps per epoch; 5 steps cross epoch boundaries and validations.
    raw = tiny_config(tmp_path, data, batch_size=4, max_epochs=10, grad_clip=1.0)
    raw["run_dir"] = str(tmp_path / "ddp")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    env_cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    rc, out = _run(
        env_cmd + ["-m", "euclidnet.cli", "train", str(cfg_file), "--max-steps", "5", "--quiet"], tmp_path, timeout=600
    )
    assert rc == 0, out[-3000:]

    raw["run_dir"] = str(tmp_path / "single")
    single = Trainer(config_from_dict(raw), max_steps=5, final_eval=False, verbose=False)
    single.fit()
    ddp_state = load_checkpoint(tmp_path / "ddp" / "last.ckpt")["train_state"]
    assert ddp_state["global_step"] == 5
    ref = single.model.state_dict()
    init = Trainer(
        config_from_dict({**raw, "run_dir": str(tmp_path / "init")}), max_steps=0, final_eval=False, verbose=False
    ).model.state_dict()
    for k, v in ref.items():
        # Same math, different summation order across ranks: equal to float64 rounding.
        torch.testing.assert_close(ddp_state["model"][k], v, rtol=1e-9, atol=1e-12)
        if k == "model.pair_w":
            assert (v - init[k]).abs().max() > 1e-3, "parameters did not move"
