"""postrnn: the post's RNN as the post built it: a next-city language model over every city.

Tokens are cities and nothing else: no coordinates, no neighbour mask, no revisit rule, no
edge features. The model reads the source, the target, then the path so far (which starts
at the source), and at every position predicts the next city with a softmax over all
21,217 cities. Trained with teacher forcing and cross-entropy on the Shortest Path Dataset.
Input and output embeddings are tied (score = W h . token + bias), as in most small LMs.

Decoding runs until the model emits the target or a hop cap is reached. Nothing stops it
from jumping to a city 2,000 km away: illegal jumps are possible and counted. Test-time
compute is best-of-N with the exact verifier (`BestOfNModel`), so an invalid path can still be
the best of its batch, and is then shown with its illegal jumps. Compute is counted by the one
convention (`citypath.cost`), sample by sample from what was decoded (`prompt_ops`, `hop_ops`).

    >>> m = load_model("post-rnn-small")                   # doctest: +SKIP
    >>> paths = list(m.refine(g, src, dst, steps=8))       # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from citypath import cost
from citypath.graph import CityGraph
from citypath.models.base import SAMPLE_CHUNK, BestOfNModel, CheckpointError


@dataclass(frozen=True)
class PostRNNConfig:
    """Everything needed to rebuild the model (stored in the card)."""

    n_cities: int
    embed_dim: int = 64
    hidden_dim: int = 64
    layers: int = 1
    max_hops: int = 128           # decoding cap (the longest SPD path has 82 hops on the default graph)
    temperature: float = 1.0      # sampling temperature for steps >= 2
    train_negatives: int = 0      # 0: full softmax in training; n: sampled softmax with n shared negatives



BLOCK_COLS = 2048          # cities a block of the scores' product covers (`PostRNN.decode_logits`)
BLOCKS_FROM_ROWS = 33      # rows from which it goes by blocks: a single query's chunk (<= 32 rows) is left as it was


SIZES = {
    # post-rnn-large has ~4x the parameters of post-rnn-small (most of both are the city table).
    "small": dict(embed_dim=64, hidden_dim=64),
    "large": dict(embed_dim=256, hidden_dim=256),
}


class PostRNN(nn.Module):
    """City embedding -> GRU -> tied full-vocabulary scores. `forward` is the teacher-forced loss."""

    def __init__(self, config: PostRNNConfig):
        super().__init__()
        c = self.config = config
        self.embed = nn.Embedding(c.n_cities, c.embed_dim)
        nn.init.normal_(self.embed.weight, std=0.05)
        self.gru = nn.GRU(c.embed_dim, c.hidden_dim, num_layers=c.layers, batch_first=True)
        self.out = nn.Linear(c.hidden_dim, c.embed_dim)
        self.bias = nn.Parameter(torch.zeros(c.n_cities))
        self._table: torch.Tensor | None = None
        self._table_key: tuple[int, int] | None = None

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every city for each state row: (..., n_cities)."""
        return self.out(h) @ self.embed.weight.T + self.bias

    def decode_logits(self, h: torch.Tensor) -> torch.Tensor:
        """`logits` for decoding (no gradient): the same product with the city table stored transposed, made
        once and made again when the weights change. With a few rows, MKL's product with the transposed view
        runs ~3x slower than with the stored copy (one row: 3.1 vs 0.9 ms); from 4 rows the two agreed bit for
        bit on this machine's MKL, with 1-3 rows they differ in the last bits of a score (float32 sums in another
        order; benchmarks/bench_postrnn.py counts the paths that differ: none of 512)."""
        w = self.embed.weight
        key = (w.data_ptr(), w._version)
        if self._table_key != key:
            with torch.inference_mode(False), torch.no_grad():
                self._table = w.detach().T.contiguous()
            self._table_key = key
        x = self.out(h)
        if len(x) < BLOCKS_FROM_ROWS:
            return x @ self._table + self.bias
        # Many rows (a crowd's samples): the table's columns a block at a time, each score the same sum in the
        # same order as the whole product's (benchmarks/bench_postrnn.py counts the paths that differ: none of
        # 512); a batched 16-step query so costs 0.86x the CPU (results/issue31-postrnn-blocks.json).
        n = self._table.shape[1]
        return torch.cat([x @ self._table[:, i:i + BLOCK_COLS] for i in range(0, n, BLOCK_COLS)], dim=1) + self.bias

    def prefix(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """GRU state after reading (source, target): the post's prompt."""
        _, h = self.gru(self.embed(torch.stack([src, dst], dim=1)))
        return h

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, negatives: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed cross-entropy, number of predictions) of a batch.

        tokens (B, T): [src, dst, src, c1, ..., dst, pad...]; position i >= 2 predicts token i + 1
        where mask[:, i + 1]. With `negatives` (a shared sample of city ids, uniform), the softmax
        is sampled: the true city plus the negatives, the negatives' scores corrected by
        log(n_cities / n_negatives) so the sum estimates the full partition function; an empty
        `negatives` means the full softmax (always used for validation and inference).
        """
        out, _ = self.gru(self.embed(tokens[:, :-1]))
        sel = mask[:, 1:].clone()
        sel[:, :2] = False                       # (src, dst) -> src is not a prediction
        h = self.out(out[sel])
        target = tokens[:, 1:][sel]
        if negatives.numel() == 0:
            logits = h @ self.embed.weight.T + self.bias
            return nn.functional.cross_entropy(logits, target, reduction="sum"), torch.tensor(float(len(target)))
        pos = (h * self.embed(target)).sum(-1) + self.bias[target]
        neg = h @ self.embed(negatives).T + self.bias[negatives]
        neg = neg + float(np.log(self.config.n_cities / len(negatives)))
        neg = neg.masked_fill(negatives[None, :] == target[:, None], -torch.inf)
        logz = torch.logsumexp(torch.cat([pos[:, None], neg], dim=1), dim=1)
        return (logz - pos).sum(), torch.tensor(float(len(target)))


# -- decoding -------------------------------------------------------------------------------

def layers_ops(c: PostRNNConfig) -> float:
    """Operations of one token through the GRU's layers for one row (cells, the state read and written back)."""
    return cost.gru_cell(c.embed_dim, c.hidden_dim) + (c.layers - 1) * cost.gru_cell(c.hidden_dim, c.hidden_dim) \
        + cost.fill(2 * c.layers * c.hidden_dim)


def hop_ops(c: PostRNNConfig, sampled: bool) -> float:
    """Operations of one row's decoded hop: the current city's embedding, the GRU, the output projection and
    the score of every city (a product with the whole table, plus bias), then the choice: the argmax, or the
    scores / temperature, the softmax, its cumulative sum and a binary search; then the step's bookkeeping."""
    n = c.n_cities
    ops = cost.fill(c.embed_dim) + layers_ops(c)
    ops += cost.matmul(1, c.hidden_dim, c.embed_dim) + c.embed_dim + cost.matmul(1, c.embed_dim, n) + n
    if sampled:
        ops += cost.fill(n) + cost.softmax(n) + cost.fill(n) + 2.0 + math.log2(n) + 1.0
    else:
        ops += cost.select(n)
    return ops + 3.0


def prompt_ops(c: PostRNNConfig, rows: int) -> float:
    """Operations of reading the prompt (source, target) for `rows` rows, and the rows' bookkeeping arrays."""
    return rows * (cost.fill(2 * c.embed_dim) + 2 * layers_ops(c)) + cost.fill(6 * rows)


def decode(net: PostRNN, srcs: np.ndarray, dsts: np.ndarray, *, greedy: bool,
           generator: torch.Generator | None = None, temperature: float = 1.0,
           hop_caps: np.ndarray | None = None, ops: np.ndarray | None = None,
           generators: list[torch.Generator] | None = None, blocks: int = 1) -> list[list[int]]:
    """One path per (src, dst) row, decoded as one batch over the full vocabulary.

    A row stops when it emits its target or after `hop_caps[row]` hops (default: config.max_hops).

    Sampling draws one uniform per position for each of SAMPLE_CHUNK rows, indexed by the row's
    number within the chunk, so sample i's path does not depend on how many are drawn.
    With `ops` ((n,) floats) each row's operations are added to it (`citypath.cost`): its share of the
    prompt, its own hops, and an equal share of the work done once per hop for every row still decoding.

    With `generators` (sampling only; instead of `generator`) the rows are len(generators) equal blocks, each
    one query's chunk of samples decoded beside the others': block b draws its uniforms from generators[b]
    as it would alone, and its operations are counted as if it were decoded alone (its own prompt, hops and
    per-hop bookkeeping), so a query's counted work does not depend on what it was batched with. `blocks`
    (greedy only) splits the rows so, each block a query of its own, counted as if decoded alone.
    """
    c = net.config
    src = torch.as_tensor(np.asarray(srcs, dtype=np.int64))
    dst = torch.as_tensor(np.asarray(dsts, dtype=np.int64))
    n = len(src)
    if blocks > 1 and not greedy:
        raise ValueError("sampled rows are split into queries by their `generators`, not `blocks`")
    streams = generators if generators is not None else [generator] * blocks
    if n % len(streams):
        raise ValueError(f"{n} rows do not split into {len(streams)} equal blocks")
    size = n // len(streams)
    h = net.prefix(src, dst)
    cur = src.clone()
    paths = [[int(s)] for s in src.tolist()]
    active = (src != dst).numpy().copy()
    cap = np.asarray(hop_caps, dtype=np.int64) if hop_caps is not None else np.full(n, c.max_hops)
    if ops is not None:
        ops += prompt_ops(c, size) / size
    for hop in range(int(cap.max(initial=0))):
        active &= hop < cap
        if not active.any():
            break
        rows = torch.from_numpy(np.flatnonzero(active))
        live = active.reshape(len(streams), size).any(axis=1)
        if ops is not None:
            # Once per hop for each block still decoding: the cap test, the live test and scan, the chunk's
            # uniforms (sampling).
            shared = cost.fill(4 * size) + (0.0 if greedy else cost.fill(SAMPLE_CHUNK))
            per_block = active.reshape(len(streams), size).sum(axis=1)
            ops[rows.numpy()] += hop_ops(c, not greedy) + (shared / np.maximum(per_block, 1)).repeat(size)[rows.numpy()]
        out, h_a = net.gru(net.embed(cur[rows])[:, None], h[:, rows])
        h[:, rows] = h_a
        scores = net.decode_logits(out[:, 0])
        if greedy:
            nxt = scores.argmax(dim=1)
        else:
            # Inverse-CDF sampling: one uniform per row and hop (a Gumbel draw per city cost 20x more).
            u = torch.cat([torch.rand(SAMPLE_CHUNK, generator=gen)[:size] if on else torch.zeros(size)
                           for gen, on in zip(streams, live)])[rows]
            # x / 1.0 is x, bit for bit: at the cards' temperature the division (a pass over every score) is skipped.
            cdf = torch.softmax(scores if temperature == 1.0 else scores / temperature, dim=1).cumsum(dim=1)
            nxt = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(1).clamp_max(c.n_cities - 1)
        cur[rows] = nxt
        for row, city in zip(rows.tolist(), nxt.tolist()):
            paths[row].append(city)
            if city == int(dst[row]):
                active[row] = False
    return paths


def hop_cap(g: CityGraph, src: int, dst: int, max_hops: int) -> int:
    """Hops a path may take before decoding gives up: 3x the hops an optimal path needs here, plus 16.

    Optimal paths average ~67 km a hop (0.75 radius) and run ~8% over the straight line; a path
    that has not reached the target after 3x that cannot be within the bounded-length check.
    """
    return min(max_hops, int(3 * 1.08 * g.distance_km(src, dst) / (0.75 * g.radius_km)) + 16)


# -- the routing model ----------------------------------------------------------------------

class PostRNNModel(BestOfNModel):
    """The post's RNN behind the routing protocol: step 1 greedy, step k the verifier's best of k."""

    family = "postrnn"
    network, config_class = PostRNN, PostRNNConfig

    @classmethod
    def default_config(cls, g: CityGraph) -> PostRNNConfig:
        return PostRNNConfig(n_cities=g.n_cities)

    def check_graph(self, g: CityGraph) -> None:
        """The trained graph, and one city token per city of it."""
        super().check_graph(g)
        if self.config.n_cities != g.n_cities:
            raise CheckpointError(f"model {self.name!r} has {self.config.n_cities} city tokens, "
                                  f"the graph {g.n_cities}")

    def query_setup_ops(self, g: CityGraph, src: int, dst: int) -> float:
        """The hop cap's straight line."""
        return cost.haversine(1)

    def _decode(self, g: CityGraph, src: int, dst: int, n: int, *, greedy: bool, generator, ops: np.ndarray
                ) -> list[list[int]]:
        cap = hop_cap(g, src, dst, self.config.max_hops)
        return decode(self.net, np.full(n, src), np.full(n, dst), greedy=greedy, generator=generator,
                      temperature=self.config.temperature, hop_caps=np.full(n, cap), ops=ops)

    batches_queries = True     # a crowd's samples in one product with the city table: ~0.55x the CPU a query

    def _decode_greedy_many(self, g: CityGraph, queries, ops: np.ndarray) -> list[list[int]]:
        srcs, dsts = (np.array([q[i] for q in queries]) for i in (0, 1))
        caps = np.array([hop_cap(g, s, t, self.config.max_hops) for s, t in queries])
        return decode(self.net, srcs, dsts, greedy=True, hop_caps=caps, ops=ops, blocks=len(queries))

    def _decode_many(self, g: CityGraph, queries, n: int, generators: list, ops: list[np.ndarray]
                     ) -> list[list[list[int]]]:
        srcs, dsts = (np.repeat([q[i] for q in queries], n) for i in (0, 1))
        caps = np.repeat([hop_cap(g, s, t, self.config.max_hops) for s, t in queries], n)
        flat = np.zeros(n * len(queries))
        paths = decode(self.net, srcs, dsts, greedy=False, generators=generators,
                       temperature=self.config.temperature, hop_caps=caps, ops=flat)
        for i, each in enumerate(ops):
            each += flat[i * n:(i + 1) * n]
        return [paths[i * n:(i + 1) * n] for i in range(len(queries))]

    def path_nll(self, g: CityGraph, path: list[int]) -> float | None:
        """Teacher-forced cross-entropy per predicted city of `path`, softmax over every city (nats)."""
        self.check_graph(g)
        ids = [g.check_id(c) for c in path]
        if len(ids) < 2:
            return None
        tokens = torch.tensor([[ids[0], ids[-1], *ids]])
        mask = torch.ones_like(tokens, dtype=torch.bool)
        with torch.inference_mode():
            loss, n = self.net(tokens, mask, torch.zeros(0, dtype=torch.int64))
        return float(loss / n)
