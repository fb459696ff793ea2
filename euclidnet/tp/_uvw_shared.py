"""Shared-weight 'uvw' tensor products on CPU, in chunks of samples, on worker threads (eager mode only).

A descriptor whose live paths are all 'uvw' with one weight vector for the batch (e.g.
:class:`~euclidnet.tp.FullyConnectedTensorProduct`) is a multilinear form of four slots, as in
:mod:`euclidnet.kernels._tp`::

    F(x1, x2, W, g) = sum_paths sum_z sum_(u,v,w,i,j,k) C_ijk x1[z,u,i] x2[z,v,j] W[u,v,w] g[z,w,k]

(slot 0: ``x1 [Z, dim1]``, 1: ``x2 [Z, dim2]``, 2: ``W [numel]``, 3: ``g [Z, dim_out]``; ``C`` is the CG block
times the path coefficient; a block of ``x`` is ``[Z, mul, 2l + 1]`` row-major, ``W`` of a path is
``[mul1, mul2, mul_out]`` row-major, e3nn's layout). The forward is ``T_3(x1, x2, W) = dF/dg`` and each
gradient is ``T_s`` of the other three slots, so one engine, :class:`UVWSharedPlan`, computes every ``T_s``
and :class:`UVWShared` (an ``autograd.Function`` whose backward calls itself with permuted slots) is
differentiable to any order with the same code. Its first-order backward (no graph recorded) computes the
three gradients in one pass instead.

Contractions. The slots ``0, 1, 3`` ("small" operands, per-sample blocks ``[Z, mul_r, d_r]``,
``d_r = 2 l_r + 1``) play symmetric roles. For a target small slot ``t`` and the other two ``p, q`` a path
is summed in one of three orders, each one GEMM with the weights over ``d`` rows per sample (the dominant
cost, ``Z d mul^3`` multiply-adds):

* ``outer``: ``T[z, k_t, u_p, u_q] = sum C P Q`` (per sample ``[d_t mul_p, d_q] @ [d_q, mul_q]``, a
  broadcast multiply when a ``d`` is 1), then ``T [Z d_t, mul_p mul_q] @ W [mul_p mul_q, mul_t]``;
* ``first p`` (``q`` the other operand): ``Y[z, i_p, u_q, u_t] = sum_(u_p) P[z, u_p, i_p] W[u_p, u_q, u_t]``
  (GEMM ``[Z d_p, mul_p] @ [mul_p, mul_q mul_t]``), then per sample ``R [d_t, d_p mul_q] @ Y [d_p mul_q,
  mul_t]`` (one ``bmm``) with ``R = sum C Q``;
* for the weights (slot 2), rows of one small slot ``s``: ``gW[u_s, (u_p, u_q)] += S^T [mul_s, Z d_s] @
  T_s [Z d_s, mul_p mul_q]`` (``T_s`` as in ``outer``, shared with an ``outer`` op of target ``s``);
* ``shared`` (first-order backward only): ``g`` meets the weights first and ``Y`` serves both input
  gradients (one GEMM over ``d_out`` rows instead of two).

When some ``l`` is 0, ``C`` is ``c`` times the identity between the other two slots (``_Path.delta``): the
torch code then uses views of the operands and puts ``c`` in the GEMM's ``alpha``. Every choice is made per
path at construction by a cost model (:meth:`UVWSharedPlan._cost`: GEMM multiply-adds weighted by their
measured speed, plus the intermediate's size and the small per-sample products). On tp_uvw_fc
(``64x0e+64x1o+64x1e`` x itself, 11 paths) that is 19 GEMM units (``Z 64^3`` multiply-adds) forward and 42
for the first-order backward (57 with three separate gradients).

Execution (:mod:`euclidnet.kernels._uvw_small`, compiled C; each op falls back to the one below it):

* float32 and float64 on an AVX2/FMA build, when the GEMM's column multiplicity is a multiple of 16 (float32)
  or 8 (float64): **fused kernels**. The intermediate (``T`` of an outer or weight op, ``Y`` of a first or
  shared op) is never written to memory: ``T`` is generated a block of rows at a time in cache and multiplied
  there, ``Y`` is computed 6 rows x 2 vectors at a time in registers and contracted with ``C`` and the other
  operand on the spot; the weights are packed once per call. Written out, the intermediates cost more than
  the GEMMs' arithmetic saves (they are ~6 MB per piece and stream through L3 twice, plus MKL's own packing
  of them).
* otherwise (no AVX2/FMA, other multiplicities): the GEMMs by torch (MKL), the per-sample contractions
  around them (forming ``T``, contracting ``Y``) by small C kernels, one pass each with the operands read in
  place.
* no working C compiler: the same in torch ops (batched small GEMMs and transposing copies).

Chunks: the samples are processed a chunk at a time, each path in pieces whose largest intermediate would be
~:data:`CHUNK_BYTES` (:func:`chunk_size`; a chunk is the largest piece, so paths with ``2l + 1 = 1``
intermediates make fewer, taller GEMMs). Each contribution to an output block is accumulated in place
(``beta = 0`` on first write) in a per-chunk ``[chunk, d, mul]`` buffer (scalar blocks: straight into the
output) then copied into the output; the weight gradient accumulates over the chunks. Scratch tensors are
reused across chunks. No ``[Z, ...]`` tensor other than the inputs, the outputs and the gradients is formed.

Threads: the samples are split in equal shares between ``torch.get_num_threads()`` workers, each running
torch ops with one intra-op thread (:func:`_parallel` says why); each worker has its own weight-gradient
accumulators, summed at the end (so the result does not depend on scheduling, only on the number of
threads).

The caller (:mod:`euclidnet.tp.execution`) uses this only for plain CPU float32/float64 tensors in eager
mode; the pure-torch plan runs under ``torch.compile``, ``torch.export``, ``torch.jit`` and ``torch.func``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..kernels import _uvw_small
from ..kernels._sh import kernels_disabled
from .descriptor import TensorProductDescriptor

__all__ = ["CHUNK_BYTES", "UVWShared", "UVWSharedPlan", "chunk_size", "release_workspaces", "supports"]

#: Target size in bytes of a path's largest intermediate per piece of a chunk (its ``T`` or ``Y``); see
#: :func:`chunk_size` for the measurements behind it.
CHUNK_BYTES = 6 * 2**20

# Cost model, in multiply-add equivalents (relative weights measured on 2 AMD EPYC cores with MKL): a GEMM
# with a short inner dimension (the "first" orders, K = mul: ~50 GFLOP/s on one core) runs slower than one
# with a long one (K = mul1 mul2: ~65); each intermediate element costs its formation and traffic; the
# per-sample small products run far below GEMM speed (one small GEMM call per sample).
_GEMM_SHORT_K = 1.4
_PER_ELEMENT = 40.0
_SMALL_BMM = 3.0

# The compiled small contractions run their inner loops along one multiplicity: below this many channels
# (measured: 16 slower, 64 faster) the batched torch ops, vectorised over the samples, are faster.
_C_MIN_VECTOR = 32

_SMALL = (0, 1, 3)  # slots of the small operands: x1, x2, out (or the gradient of out)
_AXIS = {0: 0, 1: 1, 3: 2}  # axis of a slot in C [d1, d2, dout] and in W [mul1, mul2, mul_out]


def supports(descriptor: TensorProductDescriptor, shared_weights: bool) -> bool:
    """Whether :class:`UVWSharedPlan` handles this descriptor: shared weights, every live path 'uvw'."""
    live = [p for p in descriptor.paths if not p.is_empty]
    return shared_weights and bool(live) and all(p.mode == "uvw" and p.has_weight for p in live)


def chunk_size(per_sample: int, itemsize: int, budget: int | None = None) -> int:
    """Samples per piece so that an intermediate of ``per_sample`` elements per sample is ~``budget`` bytes.

    tp_uvw_fc (largest intermediates 3 x 64 x 64 floats per sample), CPU time of fwd+bwd against the
    budget, one worker: 0.5 MB (10 samples) 2.0x, 1 MB 1.4x, 2 MB 1.1x, 3 to 24 MB 1.0x (+-5%, noise); two
    workers: 1.5 MB 1.15x, 3, 6 and 12 MB 1.0x. Small pieces pay a fixed cost per piece (~10 torch ops per
    path, the GEMMs' packing of ``W``), large ones memory. 6 MB: the plateau's start (~30 MB of scratch
    per worker).
    """
    budget = CHUNK_BYTES if budget is None else budget
    return max(1, budget // max(1, per_sample * itemsize))


# torch.set_num_threads is process-wide: callers running _parallel concurrently (several Python threads using
# tensor products) share one "single intra-op thread" period; the last one out restores the saved value.
_THREADS_LOCK = threading.Lock()
_threads_users = 0
_threads_saved = 1


def _single_threaded_enter() -> None:
    global _threads_users, _threads_saved
    with _THREADS_LOCK:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1


def _single_threaded_exit() -> None:
    global _threads_users
    with _THREADS_LOCK:
        _threads_users -= 1
        if _threads_users == 0:
            torch.set_num_threads(_threads_saved)


def _parallel(work: Callable[[int], None], nworkers: int) -> None:
    """Runs ``work(0)`` here and ``work(1..nworkers-1)`` on new threads, every one with one intra-op thread.

    Why not torch's intra-op threads: a chunk is ~100 small ops, each an OpenMP fork/join over both cores;
    when another process competes for the cores every join waits for a descheduled thread (measured on a
    shared 2-core machine: 2.5x to 25x slower, erratic), while independent workers just run at the share
    they get (and need no synchronisation but the final join). Torch ops release the GIL, and the Python
    between them is ~5% of the time. The intra-op thread count is process-wide in torch, MKL's is per
    thread: the caller sets 1 (restored on return), each worker sets its own. The workers inherit the
    caller's inference mode (outputs created under it may only be written under it) and run without grad
    recording and autocast, like the caller inside ``UVWShared.forward``/``backward``.
    """
    inference = torch.is_inference_mode_enabled()

    def run(i: int) -> None:
        with torch.inference_mode(inference), torch.no_grad(), torch.autocast("cpu", enabled=False):
            work(i)

    if nworkers == 1:
        run(0)
        return
    errors: list[BaseException] = []

    def thread_main(i: int) -> None:
        try:
            torch.set_num_threads(1)
            run(i)
        except BaseException as e:  # re-raised in the caller
            errors.append(e)

    threads = [threading.Thread(target=thread_main, args=(i,), daemon=True) for i in range(1, nworkers)]
    _single_threaded_enter()
    try:
        for t in threads:
            t.start()
        run(0)
    finally:
        for t in threads:
            t.join()
        _single_threaded_exit()
    if errors:
        raise errors[0]


def _rowvec_times(
    v: torch.Tensor, M: torch.Tensor, acc: torch.Tensor, beta: float, alpha: float, ws: _Workspace
) -> None:
    """``acc [n, 1, b] = beta acc + alpha v [n, 1, a] @ M [n, a, b]`` per sample.

    Not a bmm: torch runs a batch of single-row products as one small GEMM call per sample (~10 us each);
    a broadcast multiply and a sum over ``a`` are ~10x faster.
    """
    n, a, b = M.shape
    prod = ws.get("rowvec", n, a, b)
    torch.mul(M, v.view(n, a, 1), out=prod)
    if beta == 0.0:
        torch.sum(prod, 1, keepdim=True, out=acc)
        acc.mul_(alpha)
    else:
        acc.add_(prod.sum(1, keepdim=True), alpha=alpha)


@dataclass(frozen=True)
class _Path:
    """One live path: per small slot its offset in the flat features, multiplicity, ``2l + 1`` and block.

    ``delta`` is ``c`` when some ``l`` is 0, so that ``C`` is ``c`` times the identity between the two other
    slots (then the ``C`` contractions are views of the operands and ``c`` goes into the GEMM's ``alpha``),
    else 0.
    """

    index: int
    start: dict[int, int]
    mul: dict[int, int]
    d: dict[int, int]
    block: dict[int, int]
    w_start: int
    w_stop: int
    delta: float


@dataclass(frozen=True)
class _Op:
    """One contraction of a path, in a chunk.

    kind ``"outer"``: target ``t`` from ``T`` of ``(p, q)``; ``"first"``: target ``t``, ``p`` meets the weights
    first, ``q`` is the other operand; ``"weight"``: weight gradient with rows of slot ``t`` (``T`` of
    ``(p, q)``); ``"shared"``: ``p`` meets the weights first, the result serves targets ``t`` and ``q``.
    """

    kind: str
    t: int
    p: int
    q: int


class _Workspace:
    """Scratch tensors of one worker, reused over its chunks (one flat buffer per name, grown on demand)."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.use_c = False  # the compiled small contractions (set per call by UVWSharedPlan._run)
        self.fused = False  # the fused GEMMs (ditto)
        self.bufs: dict[str, torch.Tensor] = {}
        self.views: dict[tuple[Any, ...], torch.Tensor] = {}  # (name, *shape) -> view: no op per chunk

    def get(self, name: str, *shape: int) -> torch.Tensor:
        key = (name, *shape)
        view = self.views.get(key)
        if view is not None:
            return view
        if len(self.views) > 1024:  # many batch sizes (ragged last chunks) seen: forget the old shapes
            self.views.clear()
        numel = 1
        for s in shape:
            numel *= s
        buf = self.bufs.get(name)
        if buf is None or buf.numel() < numel:
            buf = self.bufs[name] = torch.empty(numel, dtype=self.dtype)
            self.views = {k: v for k, v in self.views.items() if k[0] != name}  # views of the old buffer
        view = self.views[key] = buf[:numel].view(shape)
        return view


class _WorkspacePool:
    """Workspaces kept between calls (one per concurrently running worker and dtype).

    Fresh scratch costs page faults on every call (~12k per fwd+bwd of tp_uvw_fc without the fused kernels:
    ~4% of its time); the pool holds one workspace per worker that ran at the same time and dtype (tp_uvw_fc,
    float32, two workers: 18 MB with the fused kernels, mostly per-worker weight-gradient accumulators; ~70 MB
    without them). :func:`release_workspaces` frees them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[_Workspace] = []

    def acquire(self, dtype: torch.dtype) -> _Workspace:
        with self._lock:
            for k, ws in enumerate(self._free):
                if ws.dtype == dtype:
                    return self._free.pop(k)
        return _Workspace(dtype)

    def release(self, ws: _Workspace) -> None:
        with self._lock:
            self._free.append(ws)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


_POOL = _WorkspacePool()


def release_workspaces() -> None:
    """Frees the scratch memory kept between calls by the chunked 'uvw' tensor products."""
    _POOL.clear()


class _Chunk:
    """The state of one chunk: its operand blocks, output accumulators and which were written already."""

    def __init__(self, blocks: dict[tuple[int, int], torch.Tensor], acc: dict[tuple[int, int], torch.Tensor]):
        self.blocks = blocks  # (slot, start) -> [n, mul, d]
        self.acc = acc  # (slot, block) -> [n, d, mul]
        self.written: set[tuple[int, int]] = set()

    def target(self, pp: _Path, t: int) -> tuple[torch.Tensor, float]:
        """Accumulator of target slot ``t`` of ``pp`` and the ``beta`` to add to it (0 on first write: no
        zero fill)."""
        key = (t, pp.block[t])
        beta = 1.0 if key in self.written else 0.0
        self.written.add(key)
        return self.acc[key], beta


class UVWSharedPlan:
    """The chunked contractions of a shared-weight, all-'uvw' descriptor (see the module docstring).

    ``contract(target, ops)``: ``ops`` the four slots ``[x1 [Z, dim1], x2 [Z, dim2], W [numel], g [Z, dim_out]]``
    with ``None`` at ``target``; returns ``T_target`` (``[Z, dim]`` or ``[numel]``). ``grads(x1, x2, W, g,
    needs)``: the first-order backward of the forward, the three gradients in one pass.
    """

    def __init__(self, descriptor: TensorProductDescriptor) -> None:
        d = descriptor
        self.descriptor = d
        self.dims = {0: d.irreps_in1.dim, 1: d.irreps_in2.dim, 3: d.irreps_out.dim}
        self.numel = d.weight_numel
        irreps = {0: d.irreps_in1, 1: d.irreps_in2, 3: d.irreps_out}
        self._blocks = {
            r: [(s.start, mul, ir.dim) for (mul, ir), s in zip(irreps[r], irreps[r].slices())] for r in irreps
        }
        self.paths: list[_Path] = []
        self._cg: dict[int, torch.Tensor] = {}
        for n, p in enumerate(d.paths):
            if p.is_empty:
                continue
            C = d.cg(n, dtype=torch.float64, scaled=True)  # [d1, d2, dout]
            self._cg[n] = C
            delta = 0.0
            if min(C.shape) == 1:
                # C(0, l, l) and permutations: c * identity (to round-off) between the two l > 0 slots.
                M = C.reshape(max(C.shape), max(C.shape))
                c = float(M[0, 0])
                if (M - c * torch.eye(M.shape[0], dtype=M.dtype)).abs().max() <= 1e-14 * abs(c):
                    delta = c
            blk = {0: p.i_in1, 1: p.i_in2, 3: p.i_out}
            self.paths.append(
                _Path(
                    index=n,
                    start={r: self._blocks[r][blk[r]][0] for r in _SMALL},
                    mul={0: p.mul1, 1: p.mul2, 3: p.mul_out},
                    d={0: 2 * p.l1 + 1, 1: 2 * p.l2 + 1, 3: 2 * p.l_out + 1},
                    block=blk,
                    w_start=p.weight_slice.start,
                    w_stop=p.weight_slice.stop,
                    delta=delta,
                )
            )
        self._consts: dict[tuple[Any, ...], torch.Tensor] = {}
        # Plans: single targets (forward, and every derivative beyond the first), and the first-order
        # backward for each subset of needed gradients.
        self._single = {t: [[self._choose_single(pp, t)] for pp in self.paths] for t in (0, 1, 2, 3)}
        self._bwd: dict[tuple[bool, bool, bool], list[list[_Op]]] = {}

    # -- planning -------------------------------------------------------------------------------------

    @staticmethod
    def _outer_pair(pp: _Path, t: int) -> tuple[int, int]:
        """The other two small slots ``(p, q)`` of an outer product, ``q`` the one with the smaller ``d``."""
        p, q = (r for r in _SMALL if r != t)
        return (p, q) if pp.d[q] <= pp.d[p] else (q, p)

    @staticmethod
    def _cost(pp: _Path, op: _Op) -> float:
        """Estimated cost of ``op`` per sample, in GEMM multiply-add equivalents (see the constants)."""
        m, d = pp.mul, pp.d
        t, p, q = op.t, op.p, op.q
        if op.kind == "outer":
            return d[t] * m[p] * m[q] * m[t] + _PER_ELEMENT * d[t] * m[p] * m[q]
        if op.kind == "weight":
            return d[t] * m[t] * m[p] * m[q] + _PER_ELEMENT * d[t] * m[p] * m[q]
        if op.kind == "first":
            return (
                _GEMM_SHORT_K * d[p] * m[p] * m[q] * m[t]
                + _PER_ELEMENT * d[p] * m[q] * m[t]
                + _SMALL_BMM * d[t] * d[p] * m[q] * m[t]
            )
        # shared: Y [d_p, mul_t, mul_q] serves targets t and q
        return (
            _GEMM_SHORT_K * d[p] * m[p] * m[q] * m[t]
            + _PER_ELEMENT * d[p] * m[q] * m[t]
            + _SMALL_BMM * (d[t] + d[q]) * d[p] * m[q] * m[t]
        )

    def _options(self, pp: _Path, t: int) -> list[_Op]:
        if t == 2:
            return [_Op("weight", s, *self._outer_pair(pp, s)) for s in _SMALL]
        p, q = (r for r in _SMALL if r != t)
        return [_Op("outer", t, *self._outer_pair(pp, t)), _Op("first", t, p, q), _Op("first", t, q, p)]

    def _choose_single(self, pp: _Path, t: int) -> _Op:
        return min(self._options(pp, t), key=lambda op: self._cost(pp, op))

    def _choose_backward(self, pp: _Path, needs: tuple[bool, bool, bool]) -> list[_Op]:
        """Ops of the first-order backward of one path (gradients of x1, x2, W as flagged by ``needs``)."""
        ops: list[_Op] = []
        cost = 0.0
        for t, need in zip((0, 1, 2), needs):
            if need:
                op = self._choose_single(pp, t)
                ops.append(op)
                cost += self._cost(pp, op)
        # An outer intermediate T_s serves both the weight gradient with rows s and target s: counted once.
        w = next((op for op in ops if op.kind == "weight"), None)
        if w is not None and any(op.kind == "outer" and op.t == w.t for op in ops):
            cost -= _PER_ELEMENT * pp.d[w.t] * pp.mul[w.p] * pp.mul[w.q]
        if needs[0] and needs[1]:
            # Alternative: g meets the weights first, the result serves both input gradients. With targets
            # (t, q) = (x2, x1) the weights are needed as W[w, (u, v)], a view (transposed) of W[(u, v), w].
            shared = [_Op("shared", 1, 3, 0)] + ([self._choose_single(pp, 2)] if needs[2] else [])
            if sum(self._cost(pp, op) for op in shared) < cost:
                return shared
        # The weight op last: it reuses the T of an outer op of the same slot.
        return sorted(ops, key=lambda op: op.kind == "weight")

    def _backward_plan(self, needs: tuple[bool, bool, bool]) -> list[list[_Op]]:
        if needs not in self._bwd:
            self._bwd[needs] = [self._choose_backward(pp, needs) for pp in self.paths]
        return self._bwd[needs]

    # -- constants ------------------------------------------------------------------------------------

    def _ct(self, pp: _Path, a: int, b: int, c: int, dtype: torch.dtype) -> torch.Tensor:
        """``C`` as the ``[d_b d_c, d_a]`` matrix ``M[(i_b, i_c), i_a]`` of ``dtype`` (axes in slot order)."""
        key = (pp.index, a, b, c, dtype)
        out = self._consts.get(key)
        if out is None:
            C = self._cg[pp.index].permute(_AXIS[b], _AXIS[c], _AXIS[a])
            out = C.reshape(pp.d[b] * pp.d[c], pp.d[a]).to(dtype).contiguous()
            self._consts[key] = out
        return out

    def _coef(self, pp: _Path, a: int, b: int, c: int, dtype: torch.dtype) -> torch.Tensor:
        """``C`` with its axes in slot order ``(a, b, c)``, ``[d_a, d_b, d_c]`` contiguous, of ``dtype``."""
        key = ("coef", pp.index, a, b, c, dtype)
        out = self._consts.get(key)
        if out is None:
            C = self._cg[pp.index].permute(_AXIS[a], _AXIS[b], _AXIS[c])
            out = self._consts[key] = C.to(dtype).contiguous()
        return out

    def _contract_c(
        self, pp: _Path, a: int, b: int, c: int, X: torch.Tensor, ws: _Workspace, name: str
    ) -> torch.Tensor:
        """``R[z, i_b, i_c, u_a] = sum_(i_a) C X[z, u_a, i_a]`` as ``[n, d_b d_c, mul_a]``.

        One bmm with the constant matrix broadcast over the samples: MKL runs ``[4096, 3] @ [3, 9]`` (the
        samples as rows) ~5x slower than this ``[9, 3] @ [3, 64]`` per sample, and the result comes out in
        the layout the next bmm reads.
        """
        n = X.shape[0]
        M = self._ct(pp, a, b, c, X.dtype)
        R = ws.get(name, n, M.shape[0], pp.mul[a])
        torch.bmm(M.expand(n, -1, -1), X.transpose(1, 2), out=R)
        return R

    # -- chunk kernels --------------------------------------------------------------------------------

    @staticmethod
    def _rows(X: torch.Tensor, ws: _Workspace, name: str) -> torch.Tensor:
        """``X [n, mul, d]`` as the matrix ``[n d, mul]`` (rows ``(z, i)``): a view when ``d = 1``."""
        n, mul, d = X.shape
        if d == 1:
            return X.view(n, mul)
        out = ws.get(name, n, d, mul)
        out.copy_(X.transpose(1, 2))
        return out.view(n * d, mul)

    def _outer(
        self, pp: _Path, t: int, p: int, q: int, P: torch.Tensor, Q: torch.Tensor, ws: _Workspace
    ) -> tuple[torch.Tensor, float]:
        """``T[z, k_t, u_p, u_q] = sum C P[z, u_p, i_p] Q[z, u_q, i_q]`` as ``[n, d_t mul_p, mul_q]``, up to the
        returned factor (the GEMM's ``alpha``)."""
        n = P.shape[0]
        mp, mq, dp, dq, dt = pp.mul[p], pp.mul[q], pp.d[p], pp.d[q], pp.d[t]
        if ws.use_c and mq >= _C_MIN_VECTOR:  # one pass, C folded in
            T = ws.get(f"T{t}", n, dt * mp, mq)
            _uvw_small.outer(P, Q, self._coef(pp, t, q, p, P.dtype), T)
            return T, 1.0
        c = pp.delta
        if c and dt == 1:  # T[z, u, v] = c sum_i P[z, u, i] Q[z, v, i]
            T = ws.get(f"T{t}", n, mp, mq)
            if dp == 1:  # an outer product: a broadcast multiply, not n rank-1 GEMMs
                torch.mul(P, Q.view(n, 1, mq), out=T)
            else:
                torch.bmm(P, Q.transpose(1, 2), out=T)
            return T, c
        if c and dq == 1:  # T[z, k, u, v] = c P[z, u, k] Q[z, v]
            T = ws.get(f"T{t}", n, dt, mp, mq)
            torch.mul(P.transpose(1, 2).unsqueeze(3), Q.reshape(n, 1, 1, mq), out=T)
            return T.view(n, dt * mp, mq), c
        if c and dp == 1:  # T[z, k, u, v] = c P[z, u] Q[z, v, k]
            T = ws.get(f"T{t}", n, dt, mp, mq)
            torch.mul(P.reshape(n, 1, mp, 1), Q.transpose(1, 2).unsqueeze(2), out=T)
            return T.view(n, dt * mp, mq), c
        # A[z, k, u_p, i_q] = sum_(i_p) C P, then T[z, (k, u_p), u_q] = A[z] @ Q[z]^T (a bmm over i_q)
        A = self._contract_c(pp, p, t, q, P, ws, "A0")  # [n, dt dq, mp]
        A2 = ws.get("A", n, dt, mp, dq)
        A2.copy_(A.view(n, dt, dq, mp).transpose(2, 3))
        T = ws.get(f"T{t}", n, dt * mp, mq)
        torch.bmm(A2.view(n, dt * mp, dq), Q.transpose(1, 2), out=T)
        return T, 1.0

    def _first(
        self,
        pp: _Path,
        t: int,
        f: int,
        h: int,
        H: torch.Tensor,
        Y: torch.Tensor,
        acc: torch.Tensor,
        beta: float,
        ws: _Workspace,
    ) -> None:
        """``acc[z, k_t, u_t] (beta) += sum C H[z, u_h, i_h] Y[z, i_f, u_h, u_t]`` (``Y [n, d_f mul_h, mul_t]``)."""
        n = H.shape[0]
        mh, dt, df = pp.mul[h], pp.d[t], pp.d[f]
        if ws.use_c and pp.mul[t] >= _C_MIN_VECTOR:
            _uvw_small.rowmat(H, self._coef(pp, t, f, h, H.dtype), Y, acc, beta)
            return
        c = pp.delta
        if c and df == 1 and dt == 1:  # acc[z, 0, w] = c sum_v H[z, v] Y[z, v, w]
            _rowvec_times(H.view(n, 1, mh), Y, acc, beta, c, ws)
            return
        if c and df == 1:  # R = c H^T
            acc.baddbmm_(H.transpose(1, 2), Y, beta=beta, alpha=c)
            return
        # R[z, k_t, i_f, u_h] = sum_(i_h) C H, one bmm [d_t, d_f mul_h] x [d_f mul_h, mul_t] per sample
        R = self._contract_c(pp, h, t, f, H, ws, "R")
        acc.baddbmm_(R.view(n, dt, df * mh), Y, beta=beta)

    def _run_chunk(
        self,
        plan: list[list[_Op]],
        ch: _Chunk,
        Wv: dict[tuple[int, ...], torch.Tensor],
        gbuf: dict[tuple[int, int], torch.Tensor],
        ws: _Workspace,
        sub: list[int],
    ) -> None:
        """Adds the contributions of one chunk to its accumulators and to ``gbuf`` (weight gradient per path
        and rows slot, ``[mul_s, mul_p mul_q]``). Path ``i`` runs in pieces of ``sub[i]`` samples (its
        intermediates' budget); every piece of a path has the same ``beta`` (the first path to write an
        accumulator covers the whole chunk)."""
        m = next(iter(ch.blocks.values())).shape[0]
        for pp, ops, step in zip(self.paths, plan, sub):
            betas = []
            for op in ops:
                if op.kind == "weight":
                    betas.append(())
                elif op.kind == "shared":
                    betas.append((ch.target(pp, op.t)[1], ch.target(pp, op.q)[1]))
                else:
                    betas.append((ch.target(pp, op.t)[1],))
            keys = [(r, pp.start[r]) for r in _SMALL if (r, pp.start[r]) in ch.blocks]
            for s0 in range(0, m, step):
                s1 = min(m, s0 + step)
                blocks = {key[0]: ch.blocks[key][s0:s1] for key in keys}
                acc = {t: ch.acc[(t, pp.block[t])][s0:s1] for t in _SMALL if (t, pp.block[t]) in ch.acc}
                self._run_piece(pp, ops, betas, blocks, acc, Wv, gbuf, ws)

    def _run_piece(
        self,
        pp: _Path,
        ops: list[_Op],
        betas: list[tuple[float, ...]],
        blocks: dict[int, torch.Tensor],
        acc: dict[int, torch.Tensor],
        Wv: dict[tuple[int, ...], torch.Tensor],
        gbuf: dict[tuple[int, int], torch.Tensor],
        ws: _Workspace,
    ) -> None:
        """The ops of one path on ``n`` samples: ``blocks`` (slot -> ``[n, mul, d]``), ``acc`` (target slot ->
        ``[n, d, mul]``)."""
        outers: dict[int, tuple[torch.Tensor, float]] = {}
        for op, beta_op in zip(ops, betas):
            t, p, q = op.t, op.p, op.q
            if ws.fused and self._fused_outer(pp, op, ws.dtype):  # T formed in cache, never in memory
                M = self._coef(pp, t, q, p, ws.dtype)
                _uvw_small.fused_outer(blocks[p], blocks[q], M, Wv[(pp.index, p, q, t)], acc[t], beta_op[0])
                continue
            if ws.fused and self._fused_weight(pp, op, ws.dtype) and t not in outers:  # T generated in cache
                M = self._coef(pp, t, q, p, ws.dtype)
                _uvw_small.fused_wgrad(blocks[t], blocks[p], blocks[q], M, gbuf[(pp.index, t)])
                continue
            if op.kind in ("outer", "weight"):
                if t not in outers:
                    outers[t] = self._outer(pp, t, p, q, blocks[p], blocks[q], ws)
                T, alpha = outers[t]
                n = blocks[p].shape[0]
                T2 = T.view(n * pp.d[t], pp.mul[p] * pp.mul[q])
                if op.kind == "outer":
                    a = acc[t].view(n * pp.d[t], pp.mul[t])
                    a.addmm_(T2, Wv[(pp.index, p, q, t)], beta=beta_op[0], alpha=alpha)
                else:
                    gbuf[(pp.index, t)].addmm_(self._rows(blocks[t], ws, "S").t(), T2, alpha=alpha)
                continue
            # first / shared: Y[z, i_p, u_q, u_t] = sum_(u_p) P[z, u_p, i_p] W[u_p, u_q, u_t]
            if ws.fused and self._fused_first(pp, op, ws.dtype):  # Y formed and contracted in registers
                M1, Wp = self._coef(pp, t, p, q, ws.dtype), Wv[(pp.index, p, q, t)]
                if op.kind == "shared":
                    M2 = self._coef(pp, p, q, t, ws.dtype)
                    _uvw_small.fused_first(
                        blocks[p], blocks[q], M1, Wp, acc[t], beta_op[0], blocks[t], M2, acc[q], beta_op[1]
                    )
                else:
                    _uvw_small.fused_first(blocks[p], blocks[q], M1, Wp, acc[t], beta_op[0])
                continue
            F = blocks[p]
            n, dp, mq, mt = F.shape[0], pp.d[p], pp.mul[q], pp.mul[t]
            Y = ws.get("Y", n * dp, mq * mt)
            torch.mm(self._rows(F, ws, "F"), Wv[(pp.index, p, q, t)], out=Y)
            Y3 = Y.view(n, dp * mq, mt)
            self._first(pp, t, p, q, blocks[q], Y3, acc[t], beta_op[0], ws)
            if op.kind == "shared":
                # target q: sum over i_p of R[z, i_p][k_q, u_t] @ Y[z, i_p]^T [u_t, u_q]
                a, beta = acc[q], beta_op[1]
                B = blocks[t]
                if ws.use_c and mt >= _C_MIN_VECTOR:
                    _uvw_small.dotsum(B, self._coef(pp, p, q, t, B.dtype), Y.view(n, dp * mq, mt), a, beta)
                    continue
                if pp.delta and dp == 1 and pp.d[q] == 1:  # a[z, 0, u_q] = c sum_(u_t) B[z, u_t] Y[z, u_q, u_t]
                    _rowvec_times(B.view(n, 1, mt), Y3.transpose(1, 2), a, beta, pp.delta, ws)
                    continue
                if pp.delta and dp == 1:  # R = c B^T
                    a.baddbmm_(B.transpose(1, 2), Y3.transpose(1, 2), beta=beta, alpha=pp.delta)
                    continue
                dq = pp.d[q]
                Rq = self._contract_c(pp, t, p, q, B, ws, "R")  # [n, dp dq, mt]
                part = ws.get("part", n * dp, dq, mq)
                torch.bmm(Rq.view(n * dp, dq, mt), Y.view(n * dp, mq, mt).transpose(1, 2), out=part)
                part = part.view(n, dp, dq, mq)
                if beta == 0.0:
                    torch.sum(part, 1, out=a)
                else:
                    a.add_(part.sum(1))

    def _weight_views(
        self, W: torch.Tensor, plan: list[list[_Op]], fused: bool = False
    ) -> dict[tuple[int, ...], torch.Tensor]:
        """The weight matrices the ops of ``plan`` need, keyed ``(path, a, b, c)``: ``W`` of a path with its
        axes in slot order ``(a, b, c)`` as ``[mul_a mul_b, mul_c]`` (outer) or ``[mul_a, mul_b mul_c]``
        (first, shared); ``reshape`` copies only when the permutation is not a plain transposition."""
        out: dict[tuple[int, ...], torch.Tensor] = {}
        for pp, ops in zip(self.paths, plan):
            Wp = W[pp.w_start : pp.w_stop].view(pp.mul[0], pp.mul[1], pp.mul[3])
            for op in ops:
                if op.kind == "weight":
                    continue
                a, b, c = (op.p, op.q, op.t)
                key = (pp.index, a, b, c)
                if key in out:
                    continue
                Wabc = Wp.permute(_AXIS[a], _AXIS[b], _AXIS[c])
                if op.kind == "outer":
                    out[key] = Wabc.reshape(pp.mul[a] * pp.mul[b], pp.mul[c])
                    if fused and self._fused_outer(pp, op, W.dtype):
                        out[key] = _uvw_small.pack_weights(out[key])
                else:
                    out[key] = Wabc.reshape(pp.mul[a], pp.mul[b] * pp.mul[c])
                    if fused and self._fused_first(pp, op, W.dtype):
                        out[key] = _uvw_small.pack_weights(out[key])
        return out

    @staticmethod
    def _fused_outer(pp: _Path, op: _Op, dtype: torch.dtype) -> bool:
        """Whether the fused kernel runs ``op`` (an outer op) when fused kernels are on."""
        m, nr = pp.mul, _uvw_small.FUSED_COLUMNS[dtype]
        return op.kind == "outer" and m[op.t] % nr == 0 and pp.d[op.t] <= 24 and m[op.p] * m[op.q] >= 64

    @staticmethod
    def _fused_weight(pp: _Path, op: _Op, dtype: torch.dtype) -> bool:
        """Whether the fused kernel runs ``op`` (a weight op) when fused kernels are on."""
        return op.kind == "weight" and pp.mul[op.q] % _uvw_small.FUSED_COLUMNS[dtype] == 0 and pp.d[op.t] <= 96

    @staticmethod
    def _fused_first(pp: _Path, op: _Op, dtype: torch.dtype) -> bool:
        """Whether the fused kernel runs ``op`` (a first or shared op) when fused kernels are on."""
        m, nr = pp.mul, _uvw_small.FUSED_COLUMNS[dtype]
        return op.kind in ("first", "shared") and m[op.t] % nr == 0 and pp.d[op.p] in (1, 3, 5) and m[op.p] >= 16

    def _per_sample(self, pp: _Path, ops: list[_Op]) -> int:
        """Elements per sample of the largest intermediate of the ops of one path."""
        best = 1
        for op in ops:
            if op.kind in ("outer", "weight"):
                best = max(best, pp.d[op.t] * pp.mul[op.p] * pp.mul[op.q])
            else:
                best = max(best, pp.d[op.p] * pp.mul[op.q] * pp.mul[op.t])
        return best

    def _pieces(self, plan: list[list[_Op]], itemsize: int) -> list[int]:
        """Samples per piece of each path (its largest intermediate ~:data:`CHUNK_BYTES`); the chunk is the
        largest piece."""
        return [chunk_size(self._per_sample(pp, ops), itemsize) for pp, ops in zip(self.paths, plan)]

    def _run(
        self, plan: list[list[_Op]], ops: list[torch.Tensor | None], targets: tuple[int, ...]
    ) -> dict[int, torch.Tensor]:
        """Runs ``plan`` over the chunks; returns the requested targets (``[Z, dim]`` or ``[numel]``)."""
        ref = next(o for o in ops if o is not None and o.dim() == 2)
        Z, dtype = ref.shape[0], ref.dtype
        out: dict[int, torch.Tensor] = {}
        live: dict[int, set[int]] = {t: set() for t in targets}
        for pp, pops in zip(self.paths, plan):
            for op in pops:
                if op.kind != "weight":
                    live[op.t].add(pp.block[op.t])
                if op.kind == "shared":
                    live[op.q].add(pp.block[op.q])
        for t in targets:
            if t == 2:
                out[2] = torch.zeros(self.numel, dtype=dtype)
                continue
            o = torch.empty(Z, self.dims[t], dtype=dtype)
            for b, (start, mul, dim) in enumerate(self._blocks[t]):
                if b not in live[t] and mul * dim > 0:
                    o[:, start : start + mul * dim] = 0.0
            out[t] = o
        if Z == 0:
            return out
        # Each path runs in pieces whose largest intermediate is ~CHUNK_BYTES; a chunk is the largest piece,
        # so the paths with small intermediates (2l + 1 = 1) make few large GEMM calls.
        sub = self._pieces(plan, ref.element_size())
        nworkers = max(1, min(torch.get_num_threads(), -(-Z // min(sub))))
        bounds = [i * Z // nworkers for i in range(nworkers + 1)]  # equal shares of the samples
        wss = [_POOL.acquire(dtype) for _ in range(nworkers)]
        use_c = not kernels_disabled() and _uvw_small.small_kernel_available()
        fused = use_c and _uvw_small.fused_available()
        for ws in wss:
            ws.use_c, ws.fused = use_c, fused
        try:
            return self._run_workers(plan, ops, targets, out, live, wss, bounds)
        finally:
            for ws in wss:
                _POOL.release(ws)

    def _run_workers(
        self,
        plan: list[list[_Op]],
        ops: list[torch.Tensor | None],
        targets: tuple[int, ...],
        out: dict[int, torch.Tensor],
        live: dict[int, set[int]],
        wss: list[_Workspace],
        bounds: list[int],
    ) -> dict[int, torch.Tensor]:
        """The body of :meth:`_run`: worker ``i`` computes samples ``bounds[i]:bounds[i + 1]`` with scratch
        ``wss[i]``."""
        nworkers = len(wss)
        Z = bounds[-1]
        ref = next(o for o in ops if o is not None and o.dim() == 2)
        Wv = {} if ops[2] is None else self._weight_views(ops[2], plan, wss[0].fused)
        sub = self._pieces(plan, ref.element_size())
        n = max(sub)
        # Weight-gradient accumulators per path, one set per worker: worker 0 accumulates straight into the
        # gradient where the layout allows (rows slot x1), the others into scratch summed at the end.
        gbufs: list[dict[tuple[int, int], torch.Tensor]] = [{} for _ in range(nworkers)]
        gview: dict[tuple[int, int], torch.Tensor] = {}
        for pp, pops in zip(self.paths, plan):
            for op in pops:
                if op.kind != "weight":
                    continue
                key = (pp.index, op.t)
                view = out[2][pp.w_start : pp.w_stop].view(pp.mul[0], pp.mul[1], pp.mul[3])
                view = view.permute(_AXIS[op.t], _AXIS[op.p], _AXIS[op.q])
                shape = (pp.mul[op.t], pp.mul[op.p] * pp.mul[op.q])
                if view.is_contiguous():
                    gbufs[0][key] = view.view(shape)
                else:
                    gbufs[0][key] = wss[0].get(f"gW{key}", *shape).zero_()
                    gview[key] = view
                for i in range(1, nworkers):
                    gbufs[i][key] = wss[i].get(f"gW{key}", *shape).zero_()
        # Full-batch block views [Z, mul, d] of the small operands (contiguous rows, so a chunk is a view).
        full: dict[tuple[int, int], torch.Tensor] = {}
        for r in _SMALL:
            x = ops[r]
            if x is None:
                continue
            x = x.contiguous()
            for pp in self.paths:
                key = (r, pp.start[r])
                if key not in full:
                    full[key] = x[:, pp.start[r] : pp.start[r] + pp.mul[r] * pp.d[r]].view(Z, pp.mul[r], pp.d[r])
        acc_blocks = [(t, b) for t in targets if t != 2 for b in sorted(live[t])]

        def work(i: int) -> None:
            ws = wss[i]
            for z0 in range(bounds[i], bounds[i + 1], n):
                z1 = min(bounds[i + 1], z0 + n)
                m = z1 - z0
                acc: dict[tuple[int, int], torch.Tensor] = {}
                for t, b in acc_blocks:
                    start, mul, dim = self._blocks[t][b]
                    if dim == 1:  # scalars: [n, 1, mul] is the output's own layout, accumulate in place
                        acc[(t, b)] = out[t][z0:z1, start : start + mul].view(m, 1, mul)
                    else:
                        acc[(t, b)] = ws.get(f"acc{t}.{b}", m, dim, mul)
                ch = _Chunk({k: v[z0:z1] for k, v in full.items()}, acc)
                self._run_chunk(plan, ch, Wv, gbufs[i], ws, sub)
                for t, b in acc_blocks:
                    start, mul, dim = self._blocks[t][b]
                    if dim > 1:
                        out[t][z0:z1, start : start + mul * dim].view(m, mul, dim).copy_(acc[(t, b)].transpose(1, 2))

        _parallel(work, nworkers)
        for key, buf in gbufs[0].items():
            for other in gbufs[1:]:
                buf.add_(other[key])
            if key in gview:
                gview[key].copy_(buf.view(gview[key].shape))
        return out

    # -- entry points ---------------------------------------------------------------------------------

    def contract(self, target: int, ops: list[torch.Tensor | None]) -> torch.Tensor:
        """``T_target`` of the other three slots (``ops[target]`` is ``None``); see the class docstring."""
        return self._run(self._single[target], ops, (target,))[target]

    def grads(
        self, x1: torch.Tensor, x2: torch.Tensor, W: torch.Tensor, g: torch.Tensor, needs: tuple[bool, bool, bool]
    ) -> list[torch.Tensor | None]:
        """Gradients of ``<g, forward(x1, x2, W)>`` w.r.t. ``x1, x2, W`` (``None`` where not ``needs``), in one
        pass over the chunks."""
        targets = tuple(t for t, need in zip((0, 1, 2), needs) if need)
        if not targets:
            return [None, None, None]
        res = self._run(self._backward_plan(needs), [x1, x2, W, g], targets)
        return [res.get(t) for t in (0, 1, 2)]


class UVWShared(torch.autograd.Function):
    """``T_target`` of a :class:`UVWSharedPlan`; ``a, b, c`` fill the other slots in order (x1, x2, W, g).

    Its backward is itself with the slots permuted, so it is differentiable to any order; a first-order
    backward of the forward (target 3, no graph being recorded) computes the three gradients in one pass.
    """

    @staticmethod
    def forward(
        ctx: Any, plan: UVWSharedPlan, target: int, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        ctx.plan, ctx.target = plan, target
        ctx.save_for_backward(a, b, c)
        ops: list[torch.Tensor | None] = [a, b, c]
        ops.insert(target, None)
        with torch.no_grad():
            return plan.contract(target, ops)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        ops: list[torch.Tensor | None] = list(ctx.saved_tensors)
        ops.insert(ctx.target, g)
        needs = tuple(ctx.needs_input_grad[2:])
        if ctx.target == 3 and not torch.is_grad_enabled():
            x1, x2, W, go = ops
            return (None, None, *ctx.plan.grads(x1, x2, W, go.contiguous(), needs))
        grads: list[torch.Tensor | None] = []
        slots = [s for s in range(4) if s != ctx.target]
        for s, need in zip(slots, needs):
            if need:
                others = [ops[r] for r in range(4) if r != s]
                grads.append(UVWShared.apply(ctx.plan, s, *others))
            else:
                grads.append(None)
        return (None, None, *grads)
