"""Normal-vector regression on synthetic point clouds: Tensor Frames vs the same backbone on raw coordinates.

The showcase task of Lippmann et al. (arXiv:2405.15389). Point clouds are sampled from ellipsoids, tori,
superquadrics and deformed spheres (:mod:`euclidnet.data.shapes`) with exact normals; the target is the
normal up to sign, with loss ``1 - |cos(pred, n)|``. Each point gets its position relative to the cloud's
centroid as a ``1x1o`` input feature. Two models with the *same* backbone are trained on shapes in their
canonical orientation only (no augmentation):

* ``TensorFrames(backbone, frames=...)`` — equivariant by construction;
* the backbone on plain global coordinates (``frames="none"``).

Both are then evaluated on the test clouds as generated, randomly rotated, and randomly rotoreflected
(rotation times inversion). The wrapped model's three errors agree up to float round-off; the plain
backbone, which never saw other orientations, degrades.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from ..data.shapes import SHAPE_KINDS, normals_dataset
from ..graph.data import AtomicGraph, collate
from ..models.tensor_frames import TensorFrames
from ..o3 import rand_matrix

MAX_NEIGHBORS = 16

DESCRIPTION = "normal vectors of point clouds: Tensor Frames vs plain backbone, trained unrotated, tested rotated"

__all__ = ["DESCRIPTION", "main", "run", "build_model", "normal_loss", "transform_graph", "evaluate"]


def normal_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-point ``1 - |cos(pred, target)|`` ``[N]`` (sign-agnostic; 1 for a zero prediction)."""
    cos = (pred * target).sum(-1) / (pred.norm(dim=-1) * target.norm(dim=-1) + 1e-12)
    return 1.0 - cos.abs()


def build_model(frames: str, backbone: str, r_max: float, hidden: str, layers: int, width: int) -> TensorFrames:
    """The normal-regression model: ``1x1o`` centred positions in, a ``1o`` vector per point out."""
    return TensorFrames(
        backbone,
        frames=frames,
        r_max=r_max,
        irreps_node_in="1x1o",
        irreps_hidden=hidden,
        node_outputs={"normal": "1o"},
        num_layers=layers,
        mlp_hidden=width,
        max_num_neighbors=MAX_NEIGHBORS,
    )


def transform_graph(graph: AtomicGraph, R: torch.Tensor) -> AtomicGraph:
    """Apply the orthogonal ``R`` to positions, centred-position features and normal labels (edges are kept:
    distances do not change)."""
    R = R.to(graph.pos.dtype)
    return AtomicGraph(
        pos=graph.pos @ R.T,
        node_features=graph.node_features @ R.T,
        labels={"normals": graph.labels["normals"] @ R.T},
        edge_index=graph.edge_index,
        cell_shifts=graph.cell_shifts,
        edge_r_max=graph.edge_r_max,
    )


def evaluate(model: TensorFrames, graphs: Sequence[AtomicGraph], batch_size: int = 8) -> float:
    """Mean ``1 - |cos|`` over all points of ``graphs``."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for k in range(0, len(graphs), batch_size):
            g = collate(graphs[k : k + batch_size])
            loss = normal_loss(model(g)["normal"], g.labels["normals"])
            total += float(loss.sum())
            count += loss.numel()
    return total / count


def train(
    model: TensorFrames, graphs: Sequence[AtomicGraph], epochs: int, batch_size: int, lr: float, seed: int
) -> list[float]:
    """Adam on the mean ``1 - |cos|``, cosine-decayed learning rate; returns the per-epoch mean loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(graphs) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr * 0.05)
    gen = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(graphs), generator=gen).tolist()
        running, n = 0.0, 0
        for k in range(0, len(order), batch_size):
            g = collate([graphs[i] for i in order[k : k + batch_size]])
            loss = normal_loss(model(g)["normal"], g.labels["normals"]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
            n += 1
        history.append(running / max(n, 1))
    return history


def run(
    num_points: int = 128,
    num_train: int = 40,
    num_test: int = 8,
    epochs: int = 10,
    batch_size: int = 4,
    lr: float = 5e-3,
    backbone: str = "pointnet",
    frames: str = "pca",
    r_max: float = 0.55,
    hidden: str = "8x0e + 4x1o + 2x2e",
    layers: int = 2,
    width: int = 24,
    seed: int = 0,
    verbose: bool = True,
    num_threads: int | None = 1,
    kinds: Sequence[str] = SHAPE_KINDS,
    models_out: dict[str, TensorFrames] | None = None,
) -> dict[str, dict[str, float]]:
    """Train both models and evaluate them; returns ``{model: {"canonical"|"rotated"|"rotoreflected": err,
    "train_loss": ..., "equivariance": ...}}`` (``equivariance``: relative max deviation of the model's
    normals under a rotation, in float32). ``num_threads``: torch intra-op threads during the run (1 is
    fastest for these small graphs on a shared machine; ``None`` leaves torch's setting). ``kinds``: shape
    families (:data:`~euclidnet.data.shapes.SHAPE_KINDS`). ``models_out``: if given, receives the trained
    models by name."""
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _run(num_points, num_train, num_test, epochs, batch_size, lr, backbone, frames, r_max, hidden,
                    layers, width, seed, verbose, tuple(kinds), models_out)
    finally:
        torch.set_num_threads(old_threads)


def _run(
    num_points: int, num_train: int, num_test: int, epochs: int, batch_size: int, lr: float, backbone: str,
    frames: str, r_max: float, hidden: str, layers: int, width: int, seed: int, verbose: bool,
    kinds: tuple[str, ...], models_out: dict[str, TensorFrames] | None,
) -> dict[str, dict[str, float]]:
    dtype = torch.float32
    t0 = time.perf_counter()
    train_set = [g.with_edges(r_max, max_num_neighbors=MAX_NEIGHBORS)
                 for g in normals_dataset(num_train, num_points, seed, kinds, dtype=dtype)]
    test_set = [g.with_edges(r_max, max_num_neighbors=MAX_NEIGHBORS)
                for g in normals_dataset(num_test, num_points, seed + 10_000, kinds, dtype=dtype)]
    gen = torch.Generator().manual_seed(seed + 1)
    rots = [rand_matrix(generator=gen, dtype=torch.float64) for _ in test_set]
    rotated = [transform_graph(g, R) for g, R in zip(test_set, rots)]
    reflected = [transform_graph(g, -R) for g, R in zip(test_set, rots)]
    if verbose:
        deg = sum(g.num_edges for g in train_set) / sum(g.num_nodes for g in train_set)
        print(f"data: {num_train} train / {num_test} test clouds x {num_points} points, r_max {r_max} "
              f"(mean degree {deg:.1f}); {time.perf_counter() - t0:.1f}s")
    results: dict[str, dict[str, float]] = {}
    names = {f"TensorFrames({backbone}, {frames})": frames, f"plain {backbone} (global coords)": "none"}
    for name, fr in names.items():
        torch.manual_seed(seed)
        model = build_model(fr, backbone, r_max, hidden, layers, width).to(dtype)
        t1 = time.perf_counter()
        hist = train(model, train_set, epochs, batch_size, lr, seed)
        res = {
            "canonical": evaluate(model, test_set),
            "rotated": evaluate(model, rotated),
            "rotoreflected": evaluate(model, reflected),
            "train_loss": hist[-1],
        }
        with torch.no_grad():
            model.eval()
            a = model(test_set[0])["normal"].double() @ rots[0].T
            b = model(rotated[0])["normal"].double()
            res["equivariance"] = float((a - b).abs().max() / a.abs().max())
        results[name] = res
        if models_out is not None:
            models_out[name] = model
        if verbose:
            print(f"trained {name}: {epochs} epochs, final train loss {hist[-1]:.4f}; {time.perf_counter() - t1:.1f}s")
    if verbose:
        w = max(len(n) for n in results) + 2
        print()
        print("mean (1 - |cos|) on the test clouds (lower is better; 0 = exact normals up to sign)")
        print(f"{'model':<{w}}{'canonical':>11}{'rotated':>11}{'rotorefl.':>11}   rel. equiv. err")
        for name, r in results.items():
            print(f"{name:<{w}}{r['canonical']:>11.4f}{r['rotated']:>11.4f}{r['rotoreflected']:>11.4f}"
                  f"   {r['equivariance']:.1e}")
        print(f"total {time.perf_counter() - t0:.1f}s")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="euclidnet demo normals", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=128, help="points per cloud")
    p.add_argument("--train", type=int, default=40, help="training clouds")
    p.add_argument("--test", type=int, default=8, help="test clouds")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--backbone", choices=["pointnet", "mlp"], default="pointnet")
    p.add_argument("--frames", choices=["learned", "pca"], default="pca")
    p.add_argument("--r-max", type=float, default=0.55, help="neighbourhood radius (shapes are ~unit size)")
    p.add_argument("--hidden", default="8x0e + 4x1o + 2x2e", help="irreps of the hidden (message) features")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=24, help="MLP width")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shapes", nargs="+", choices=SHAPE_KINDS, default=list(SHAPE_KINDS), help="shape families")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    a = p.parse_args(argv)
    for name in ("points", "train", "test", "epochs", "batch_size", "layers", "width"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    run(a.points, a.train, a.test, a.epochs, a.batch_size, a.lr, a.backbone, a.frames, a.r_max, a.hidden,
        a.layers, a.width, a.seed, num_threads=a.threads or None, kinds=a.shapes)
    return 0
