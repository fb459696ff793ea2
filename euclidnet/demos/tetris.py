"""3D Tetris: the classic unit test of Euclidean networks.

Eight shapes of four unit cubes, two of which are mirror images of each other (the chiral pair). Each model
is trained on ONE orientation of every shape, then evaluated on the shapes under random rotations (and
translations) and under random rotoreflections (rotation times inversion). An E(3)-equivariant classifier
gets 100 % on both without ever seeing a rotated example. Under a reflection, the left-handed piece becomes
the right-handed one, so the correct label of a reflected chiral piece is its mirror partner.

Parity-aware models predict ``6x0e + 1x0e + 1x0o`` per graph: six scores for the achiral shapes, one for
"chiral", and a pseudoscalar ``h`` that flips sign under inversion; the two chiral logits are
``s_chiral + h`` and ``s_chiral - h``. An invariant model (SchNet) sees only distances, which are the
same for a shape and its mirror image, so it provably cannot separate the chiral pair (at best 50 % on it).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor

from ..graph.data import AtomicGraph, collate
from ..o3 import rand_matrix

DESCRIPTION = "3D Tetris: train on one orientation, classify rotated and reflected shapes (per-model accuracy)"

SHAPES: dict[str, list[tuple[float, float, float]]] = {
    "square": [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)],
    "line": [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)],
    "corner": [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)],
    "L": [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0)],
    "T": [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 1)],
    "zigzag": [(0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0)],
    "chiral_left": [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 1, 0)],
    "chiral_right": [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, -1, 0)],
}
NAMES = list(SHAPES)
CHIRAL = (NAMES.index("chiral_left"), NAMES.index("chiral_right"))
R_MAX = 3.5  # larger than every shape's diameter: each graph is complete
OUTPUT_IRREPS = "6x0e + 0e + 0o"


def shapes(dtype: torch.dtype = torch.float64) -> tuple[list[Tensor], Tensor]:
    """Canonical positions of the 8 shapes (centred) and their labels."""
    pos = [torch.tensor(v, dtype=dtype) for v in SHAPES.values()]
    pos = [p - p.mean(0) for p in pos]
    return pos, torch.arange(len(pos))


def _graph(pos_list: list[Tensor]) -> AtomicGraph:
    return collate(
        [AtomicGraph(pos=p, atom_types=torch.zeros(len(p), dtype=torch.long)).with_edges(R_MAX) for p in pos_list]
    )


def logits_from_outputs(y: Tensor) -> Tensor:
    """``[B, 6x0e + 0e + 0o]`` -> ``[B, 8]`` logits; the chiral pair gets ``s + h`` and ``s - h``."""
    s, h = y[:, 6], y[:, 7]
    return torch.cat([y[:, :6], (s + h)[:, None], (s - h)[:, None]], dim=1)


def build(name: str, seed: int = 0) -> torch.nn.Module:
    """The models compared by the demo, each predicting ``6x0e + 0e + 0o`` per graph (SchNet: 8 invariants)."""
    torch.manual_seed(seed)
    from ..models import build_model

    if name == "tfn":
        return build_model("tfn", irreps_out=OUTPUT_IRREPS, num_types=1, r_max=R_MAX, num_layers=3)
    if name == "se3_transformer":
        return build_model("se3_transformer", irreps_out=OUTPUT_IRREPS, num_types=1, r_max=R_MAX, num_layers=2)
    if name == "nequip":
        return build_model(
            "nequip", num_types=1, r_max=R_MAX, num_features=8, lmax=2, num_layers=3,
            avg_num_neighbors=3.0, irreps_node_out=OUTPUT_IRREPS,
        )
    if name == "tensor_frames":
        return build_model(
            "tensor_frames", backbone="mlp", frames="learned", r_max=R_MAX, num_types=1,
            graph_outputs={"graph_features": OUTPUT_IRREPS},
        )
    if name == "schnet":
        # E(3)-invariant: distances only, 8 invariant logits; mirror images get identical logits.
        return build_model("schnet", num_types=1, r_max=R_MAX, num_features=32, num_interactions=3, num_outputs=8)
    raise ValueError(f"unknown tetris model {name!r}; available: {', '.join(MODELS)}")


MODELS = ["tfn", "se3_transformer", "nequip", "tensor_frames", "schnet"]


def predict(model: torch.nn.Module, graph: AtomicGraph) -> Tensor:
    out = model(graph)
    if "logits" in out:  # invariant classifier (SchNet)
        return out["logits"]
    return logits_from_outputs(out["graph_features"])


def train(model: torch.nn.Module, steps: int = 300, lr: float = 1e-2, log: Callable[[str], None] | None = None) -> dict:
    """Train on the canonical orientation until every shape is classified with loss < 1e-3 (or ``steps``)."""
    pos, labels = shapes(next(model.parameters()).dtype)
    graph = _graph(pos)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss = torch.tensor(float("nan"))
    step = 0
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(predict(model, graph), labels)
        loss.backward()
        opt.step()
        if loss.item() < 1e-3:
            break
        if log and step % 50 == 0:
            log(f"  step {step:4d}  loss {loss.item():.4f}")
    with torch.no_grad():
        acc = (predict(model, graph).argmax(1) == labels).float().mean().item()
    return {"steps": step, "loss": loss.item(), "train_acc": acc}


@torch.no_grad()
def evaluate(model: torch.nn.Module, num_rotations: int = 1000, seed: int = 1, chunk: int = 250) -> dict[str, float]:
    """Accuracy on ``num_rotations`` random rotations and as many rotoreflections of all 8 shapes.

    Returns overall accuracies and the accuracy on the chiral pair alone.
    """
    dtype = next(model.parameters()).dtype
    pos, labels = shapes(dtype)
    gen = torch.Generator().manual_seed(seed)
    res: dict[str, float] = {}
    for kind in ("rotated", "reflected"):
        correct = chiral_correct = total = chiral_total = 0
        for start in range(0, num_rotations, chunk):
            n = min(chunk, num_rotations - start)
            R = rand_matrix(n, generator=gen, dtype=dtype)
            if kind == "reflected":
                R = -R
            t = torch.randn(n, 3, generator=gen, dtype=dtype) * 5
            batch_pos, batch_lab = [], []
            for k in range(n):
                for p, y in zip(pos, labels.tolist()):
                    batch_pos.append(p @ R[k].T + t[k])
                    if kind == "reflected" and y in CHIRAL:
                        y = CHIRAL[1] if y == CHIRAL[0] else CHIRAL[0]
                    batch_lab.append(y)
            lab = torch.tensor(batch_lab)
            pred = predict(model, _graph(batch_pos)).argmax(1)
            ok = pred == lab
            is_chiral = (lab == CHIRAL[0]) | (lab == CHIRAL[1])
            correct += int(ok.sum())
            total += len(lab)
            chiral_correct += int(ok[is_chiral].sum())
            chiral_total += int(is_chiral.sum())
        res[kind] = correct / total
        res[f"{kind}_chiral"] = chiral_correct / chiral_total
    return res


def run(models: list[str], num_rotations: int = 1000, steps: int = 300, verbose: bool = True) -> dict[str, dict]:
    results = {}
    for name in models:
        model = build(name).double()
        t0 = time.perf_counter()
        tr = train(model, steps=steps, log=print if verbose else None)
        ev = evaluate(model, num_rotations=num_rotations)
        results[name] = {**tr, **ev, "seconds": time.perf_counter() - t0}
        if verbose:
            r = results[name]
            print(f"{name}: trained in {r['steps']} steps (loss {r['loss']:.2e}), {r['seconds']:.1f} s")
    return results


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="euclidnet demo tetris", description=DESCRIPTION)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--rotations", type=int, default=1000, help="random rotations (and rotoreflections) evaluated")
    p.add_argument("--steps", type=int, default=300, help="maximum training steps")
    args = p.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in names:
        if m not in MODELS:
            p.error(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    res = run(names, args.rotations, args.steps)
    print()
    print(f"3D Tetris, trained on 1 orientation per shape; evaluated on {args.rotations} random rotations and "
          f"{args.rotations} rotoreflections of all 8 shapes")
    print("| model | train acc | rotated acc | reflected acc | chiral pair (rotated) | chiral pair (reflected) |")
    print("|---|---|---|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['train_acc']:.0%} | {r['rotated']:.1%} | {r['reflected']:.1%} | "
              f"{r['rotated_chiral']:.1%} | {r['reflected_chiral']:.1%} |")
    return 0
