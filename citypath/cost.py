"""One cost for every family: counted operations, by one convention (docs/evaluation.md, "One cost").

A model's compute is the number of **operations** it performs on one query: one scalar arithmetic
operation, comparison, or read/write of one element in the work that decides the answer. Every
family counts with the helpers below, so that a neural network's matrix products and a search's
heap and edge bookkeeping are on one scale:

- dense arithmetic: FLOPs, a multiply-add = 2 (`matmul`), a recurrent cell (`gru_cell`), a softmax
  (`softmax`);
- per-query set-up: straight-line km from one city to n cities (`haversine`), arrays of n values
  filled or initialised (`fill`), masks over n cities (`fill`);
- scaffold work: an edge examined and relaxed (`relax`: read, add, compare, write), a heap push or
  pop (`heap`: a compare and a move per level), a sort or partial sort (`sort`, `select`), a path
  followed back through parent pointers (`walk`);
- the verifier: a candidate path scored against the best so far (`verify`).

`refine_with_compute` reports, per step, the operations of that step; work that serves every step
(the set-up) is counted in the first step, where it is spent. The protocol name `flops_per_step` is
kept for the public API: it returns these operations. Measured single-thread CPU time is the second,
independent cost (the harness measures it beside the count).

    >>> haversine(10)
    200.0
"""

from __future__ import annotations

import math

HAVERSINE_OPS = 20.0   # straight-line km between two points: ~4 trig, 1 sqrt, 1 asin, ~12 adds and multiplies
RELAX_OPS = 4.0        # an edge examined: read its length, add, compare with the best so far, write if better
VERIFY_OPS_PER_HOP = 4.0   # the verifier: is the hop an edge (a lookup), add its km, compare at the end
GRU_UNIT_OPS = 20.0    # a GRU cell's elementwise work per unit: 6 biases, 2 gate sums, 2 sigmoids (3 each),
                       # r * (W h), its sum and tanh, the blend (1 - z) n + z h (3)
SOFTMAX_OPS = 5.0      # per score: the max, subtract, exp, sum, divide
LAYER_NORM_OPS = 8.0   # per element: the mean's and variance's sums, subtract, square, divide, scale, shift
SMOOTH_L1_OPS = 8.0    # a training loss term: the error, its size, the branch, the square or the line, weight, sum
SILU_GATE_OPS = 6.0    # per SwiGLU unit: a sigmoid (3), the product with its input, the product with the up half


def human(ops: float | None) -> str:
    """1.2 Gops, 340 Mops, 12 ops ('–' when unknown): how the app and its pages write an operation count."""
    if ops is None or not math.isfinite(ops):
        return "–"
    for unit, scale in (("Tops", 1e12), ("Gops", 1e9), ("Mops", 1e6), ("kops", 1e3)):
        if ops >= scale:
            return f"{ops / scale:.3g} {unit}"
    return f"{ops:.0f} ops"


def matmul(m: int, k: int, n: int) -> float:
    """(m, k) @ (k, n): a multiply-add per output element and inner index."""
    return 2.0 * m * k * n


def gru_cell(in_dim: int, hidden: int, rows: int = 1) -> float:
    """One GRU cell step for `rows` rows: the input's and the state's products for the 3 gates, then the
    elementwise gates (`GRU_UNIT_OPS` per unit)."""
    return matmul(rows, in_dim, 3 * hidden) + matmul(rows, hidden, 3 * hidden) + GRU_UNIT_OPS * rows * hidden


def softmax(n: int) -> float:
    """Exp-normalising `n` scores into probabilities."""
    return SOFTMAX_OPS * n


def layer_norm(n: int) -> float:
    """A layer norm over `n` values (mean, variance, normalise, scale and shift)."""
    return LAYER_NORM_OPS * n


def transformer_layer(dim: int, context: int, heads: int, mlp_dim: int) -> float:
    """One token through a pre-norm transformer layer attending to `context` positions: the norm, the query,
    key and value projections, each head's scores and softmax over the context, the weighted sum of values,
    the output projection and residual, the norm, a SwiGLU MLP and its residual, and the key and value written
    to the cache."""
    attention = matmul(1, dim, context) + heads * softmax(context) + matmul(1, context, dim)
    return (layer_norm(dim) + matmul(1, dim, 3 * dim) + attention + matmul(1, dim, dim) + dim
            + layer_norm(dim) + matmul(1, dim, 2 * mlp_dim) + SILU_GATE_OPS * mlp_dim + matmul(1, mlp_dim, dim)
            + dim + fill(2 * dim))


def haversine(n: int) -> float:
    """Straight-line km from one city to `n` cities."""
    return HAVERSINE_OPS * n


def fill(n: int) -> float:
    """`n` array elements written or tested once (an initialised array, a mask, a copy)."""
    return float(n)


def relax(edges: int) -> float:
    """`edges` edges examined and relaxed."""
    return RELAX_OPS * edges


def heap(ops: int, size: int) -> float:
    """`ops` pushes or pops on a binary heap of about `size` entries: a compare and a move per level."""
    return 2.0 * ops * max(1.0, math.log2(max(size, 1) + 1))


def sort(n: int) -> float:
    """A comparison sort of `n` values."""
    return float(n) * max(1.0, math.log2(max(n, 1)))


def select(n: int) -> float:
    """A linear-time selection (argmin, argpartition, top-k) over `n` values."""
    return 2.0 * n


def walk(hops: int) -> float:
    """A path followed back through `hops` parent pointers (read, append)."""
    return 2.0 * hops


def verify(hops: int) -> float:
    """The verifier scoring one candidate path of `hops` hops (`citypath.metrics.verifier_key`)."""
    return VERIFY_OPS_PER_HOP * hops
