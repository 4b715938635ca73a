"""The sequence-model baseline: a GRU that predicts the next city of a shortest path.

Faithful to the post: cities are tokens (one embedding per city of the graph), the model reads
the source, the target and the path so far, and is trained with teacher forcing and
cross-entropy to predict the next city; decoding runs until it emits the target or hits a
maximum length. Test-time compute is best-of-N with the exact verifier (`BestOfNModel`). Compute is
counted by the one convention (`citypath.cost`), sample by sample from what was decoded
(`decode_setup_ops`, `hop_ops`).

What makes it as strong as an honest GRU can be on a 2-core CPU budget (docs/models.md has the
figures):
- every city token is a learned vector plus a projection of Fourier features of its
  coordinates, so cities the model rarely saw still "know where they are";
- the input at every step is (current city, target city, offset to the target), so the
  target is never forgotten over 50+ hops; the initial state is a function of (source, target);
- input and output embeddings are tied: the next-city score is q_t . token(city) + bias;
- the softmax is over the graph neighbours of the current city (pointer decoding; the
  `output="vocab"` option is the post's full-vocabulary softmax). Illegal jumps are then
  impossible by construction, and the remaining failure modes are wandering (never reaching
  the target) and detours (length ratio);
- each candidate's score adds its hop geometry (progress to the target, hop length, detour,
  "is the target"), weighted per step by the GRU state: without it a CPU-budget GRU wanders
  (`gru-small-plain`);
- decoding never revisits a city (a shortest path is simple), which turns loops into detours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from citypath import cost
from citypath.graph import CityGraph
from citypath.models.base import SAMPLE_CHUNK, BestOfNModel

# 1 unit of model coordinates = 1000 km.
KM_PER_UNIT = 1000.0


@dataclass
class GRUConfig:
    """Everything needed to rebuild a GRU routing model (stored in the checkpoint card)."""

    n_cities: int
    embed_dim: int = 64            # tied token embedding width
    hidden_dim: int = 256          # GRU state width
    layers: int = 1
    fourier_freqs: int = 8         # sin/cos of coordinates at 2^0..2^(f-1) cycles per 1000 km / 2pi
    output: str = "neighbors"      # "neighbors": softmax over the current city's neighbours; "vocab": all cities
    max_hops: int = 128            # decoding cap (the longest SPD path has 82 hops on the default graph)
    temperature: float = 0.5       # sampling temperature for steps >= 2 (chosen on validation pairs: docs/models.md)
    no_revisit: bool = True        # decoding masks cities already on the path
    edge_features: bool = True     # add a learned, per-step weighting of each candidate's geometry
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.output not in ("neighbors", "vocab"):
            raise ValueError(f"output={self.output!r}: choose 'neighbors' or 'vocab'")



SIZES = {
    # name: config overrides; gru-large has 4.1x the parameters of gru-small (3.26M vs 0.79M).
    "small": dict(embed_dim=32, hidden_dim=128),
    "large": dict(embed_dim=128, hidden_dim=256),
    # The train/test-compute sweep's other sizes (experiments/tradeoff.py): 0.11M, 0.38M and 4.1M parameters,
    # tiny to xl spanning 38x.
    "tiny": dict(embed_dim=4, hidden_dim=16),
    "mini": dict(embed_dim=16, hidden_dim=64),
    "xl": dict(embed_dim=128, hidden_dim=512),
}


# -- coordinates ---------------------------------------------------------------------------

def city_xy(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Cities as (x, y) in units of 1000 km, equirectangular about the graph's centre (float32)."""
    lat0, lon0 = float(np.mean(lat)), float(np.mean(lon))
    x = (lon - lon0) * math.cos(math.radians(lat0)) * 111.32 / KM_PER_UNIT
    y = (lat - lat0) * 110.57 / KM_PER_UNIT
    return np.stack([x, y], axis=1).astype(np.float32)


def fourier_features(xy: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """(..., 2) coordinates -> (..., 2 + 4 n_freqs): raw, then sin/cos at doubling frequencies."""
    freqs = 2.0 ** torch.arange(n_freqs, dtype=xy.dtype, device=xy.device)
    ang = xy[..., None] * freqs                                   # (..., 2, f)
    return torch.cat([xy, ang.sin().flatten(-2), ang.cos().flatten(-2)], dim=-1)


N_EDGE_FEATURES = 4


def edge_features(xy: torch.Tensor, cur: torch.Tensor, dst: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """Geometry of each candidate hop cur -> cand towards dst, in units of 100 km: (..., 4).

    Progress (change in straight-line distance to the target), hop length, detour (hop length
    minus progress, >= 0 by the triangle inequality) and whether the candidate is the target.
    `cur` and `dst` broadcast against `cand`.
    """
    xc, xd, xj = xy[cur], xy[dst], xy[cand]
    rem_c, rem_j = (xd - xc).norm(dim=-1), (xd - xj).norm(dim=-1)
    hop = (xj - xc).norm(dim=-1)
    progress = rem_c - rem_j
    scale = KM_PER_UNIT / 100.0
    return torch.stack([progress * scale, hop * scale, (hop - progress) * scale, (cand == dst).float()], dim=-1)


def relative_features(xy_cur: torch.Tensor, xy_dst: torch.Tensor) -> torch.Tensor:
    """Offset to the target and its length: what a router needs at every step."""
    d = xy_dst - xy_cur
    return torch.cat([d, d.norm(dim=-1, keepdim=True)], dim=-1)


# -- the network ---------------------------------------------------------------------------

class GRUNet(nn.Module):
    """Token table, GRU and tied output scorer. `forward` is the teacher-forced training loss."""

    def __init__(self, config: GRUConfig, xy: np.ndarray):
        super().__init__()
        c = self.config = config
        self.register_buffer("xy", torch.as_tensor(xy, dtype=torch.float32))
        self.embed = nn.Embedding(c.n_cities, c.embed_dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.coord = nn.Linear(2 + 4 * c.fourier_freqs, c.embed_dim)
        self.bias = nn.Parameter(torch.zeros(c.n_cities))
        in_dim = 2 * c.embed_dim + 3
        self.init = nn.Linear(2 * c.embed_dim + 3, c.layers * c.hidden_dim)
        self.gru = nn.GRU(in_dim, c.hidden_dim, num_layers=c.layers, batch_first=True)
        self.query = nn.Linear(c.hidden_dim + c.embed_dim, c.embed_dim)
        if c.edge_features:
            self.edge = nn.Linear(c.hidden_dim + c.embed_dim, N_EDGE_FEATURES)

    def tokens(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token vectors (learned + coordinates) of `ids`, or of every city."""
        if ids is None:
            return self.embed.weight + self.coord(fourier_features(self.xy, self.config.fourier_freqs))
        return self.embed(ids) + self.coord(fourier_features(self.xy[ids], self.config.fourier_freqs))

    def step_inputs(self, tok_cur, tok_dst, cur, dst) -> torch.Tensor:
        return torch.cat([tok_cur, tok_dst, relative_features(self.xy[cur], self.xy[dst])], dim=-1)

    def initial_state(self, tok_src, tok_dst, src, dst) -> torch.Tensor:
        """(layers, B, hidden) from the source and target: the post's 'source, target' prefix."""
        h = torch.tanh(self.init(self.step_inputs(tok_src, tok_dst, src, dst)))
        return h.view(-1, self.config.layers, self.config.hidden_dim).transpose(0, 1).contiguous()

    def queries(self, out: torch.Tensor, tok_dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per prediction: the query vector for the tied token scores, and the edge-feature weights."""
        z = torch.cat([out, tok_dst], dim=-1)
        return self.query(z), (self.edge(z) if self.config.edge_features else None)

    def score(self, tok: torch.Tensor, bias: torch.Tensor, q: torch.Tensor, w: torch.Tensor | None,
              cur: torch.Tensor, dst: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Next-city scores of candidates `cand` (shape (N,) flat or (N, D)); q, w, cur, dst line up with its rows."""
        if cand.dim() == 1:
            s = (q * tok[cand]).sum(-1) + bias[cand]
        elif cand.shape[1] == len(tok) and self.config.output == "vocab":   # every city, in id order
            s = q @ tok.T + bias
            w, cur, dst = w[:, None] if w is not None else None, cur[:, None], dst[:, None]
        else:
            s = torch.bmm(tok[cand], q[:, :, None])[:, :, 0] + bias[cand]
            w, cur, dst = w[:, None] if w is not None else None, cur[:, None], dst[:, None]
        if w is not None:
            s = s + (w * edge_features(self.xy, cur, dst, cand)).sum(-1)
        return s

    def forward(self, paths: torch.Tensor, lengths: torch.Tensor, cand: torch.Tensor, cand_owner: torch.Tensor,
                cand_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced cross-entropy: (sum of losses, number of predictions).

        paths (B, T+1) padded city ids, src first; lengths (B,) cities per path, sorted descending.
        For output="neighbors", the candidates are flat: `cand` city ids, `cand_owner` the packed
        prediction each belongs to, `cand_target` 1 where it is the true next city.
        """
        c = self.config
        # The whole token table once per batch: cheaper than featurising ~100 candidates per prediction.
        tok = self.tokens()
        src, dst = paths[:, 0], paths.gather(1, (lengths - 1)[:, None])[:, 0]
        tok_dst = tok[dst]
        h0 = self.initial_state(tok[src], tok_dst, src, dst)
        cur = paths[:, :-1]
        x = self.step_inputs(tok[cur], tok_dst[:, None].expand(-1, cur.shape[1], -1),
                             cur, dst[:, None].expand_as(cur))
        hops = (lengths - 1).cpu()
        packed = pack_padded_sequence(x, hops, batch_first=True, enforce_sorted=True)
        out, _ = self.gru(packed, h0)
        # The packed order of (path, position) pairs, to line predictions up with their targets.
        owner = pack_padded_sequence(torch.arange(len(paths), device=paths.device)[:, None].expand_as(cur), hops,
                                     batch_first=True, enforce_sorted=True).data
        q, w = self.queries(out.data, tok_dst[owner])
        cur_p = pack_padded_sequence(cur, hops, batch_first=True, enforce_sorted=True).data
        dst_p = dst[owner]
        if c.output == "vocab":
            nxt = pack_padded_sequence(paths[:, 1:], hops, batch_first=True, enforce_sorted=True).data
            every = torch.arange(c.n_cities, device=q.device).expand(len(q), -1)
            logits = self.score(tok, self.bias, q, w, cur_p, dst_p, every)
            return nn.functional.cross_entropy(logits, nxt, reduction="sum"), torch.tensor(float(len(nxt)))
        scores = self.score(tok, self.bias, q[cand_owner], w[cand_owner] if w is not None else None,
                            cur_p[cand_owner], dst_p[cand_owner], cand)
        # Log-sum-exp per prediction over its own candidate segment.
        n = len(q)
        zeros = torch.zeros(n, device=q.device)
        peak = torch.full_like(zeros, -1e30).scatter_reduce(0, cand_owner, scores.detach(), "amax")
        logz = zeros.index_add(0, cand_owner, (scores - peak[cand_owner]).exp()).log() + peak
        target_score = zeros.index_add(0, cand_owner, scores * cand_target)
        return (logz - target_score).sum(), torch.tensor(float(n))


# -- batches of candidates (CSR rows of the adjacency) --------------------------------------

def neighbour_rows(indptr: np.ndarray, indices: np.ndarray, cities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padded neighbour lists of `cities`: (ids (B, D) with 0 padding, mask (B, D) of real entries)."""
    start, deg = indptr[cities], indptr[cities + 1] - indptr[cities]
    width = int(deg.max()) if len(deg) else 0
    col = np.arange(width)
    mask = col[None, :] < deg[:, None]
    ids = indices[np.where(mask, start[:, None] + col[None, :], 0)]
    return np.where(mask, ids, 0), mask


# -- decoding --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tables:
    """What decoding reads, computed once per loaded model (read-only afterwards)."""

    tokens: torch.Tensor       # (n_cities, embed_dim) token vectors
    bias: torch.Tensor         # (n_cities,)


# Operations per candidate column of a decoded hop, beside its token's dot product (`citypath.cost`).
MASK_OPS = {"neighbors": 10.0,   # the padded neighbour row (compare, index, gather, pad, copy), the revisit test
                                 # (gather, not, and), the masked fill, the dead-end test
            "vocab": 6.0}       # the all-true mask, the revisit test (3), the masked fill, the dead-end test
EDGE_OPS = 32.0      # the candidate's hop geometry: its coordinates (2), km left (6), hop (6), progress, detour and
                     # scaling (5), is-target, the stack (4), then the weighted sum into its score (8)
GUMBEL_OPS = 9.0     # its uniform read, clamp, log, clamp, log, two negations, / temperature, + noise


def hop_ops(c: GRUConfig, width: int, sampled: bool) -> float:
    """Operations of one row's decoded hop over `width` candidate columns: its inputs (gathers, offset to the
    target and its length), the GRU cell of every layer and the state read and written back, the query heads,
    per candidate its token (gathered and dotted, plus bias; the vocabulary's product reads the table in
    place), its masks, geometry and draw, then the argmax and the step's bookkeeping."""
    e, h = c.embed_dim, c.hidden_dim
    in_dim = 2 * e + 3
    heads = e + N_EDGE_FEATURES * c.edge_features
    ops = cost.fill(in_dim) + 6.0
    ops += cost.gru_cell(in_dim, h) + (c.layers - 1) * cost.gru_cell(h, h) + cost.fill(2 * c.layers * h)
    ops += cost.fill(h + e) + cost.matmul(1, h + e, heads) + heads
    per_candidate = cost.matmul(1, e, 1) + 1.0 + (cost.fill(e) + 1.0 if c.output == "neighbors" else 0.0)
    per_candidate += MASK_OPS[c.output] + EDGE_OPS * c.edge_features + GUMBEL_OPS * sampled
    if c.edge_features:
        ops += 6.0                        # the current city's km left to the target
    return ops + width * per_candidate + cost.select(width) + 5.0


def decode_setup_ops(c: GRUConfig, n: int) -> float:
    """Operations of one decode of `n` rows before its first hop: the rows' ids and token gathers, the initial
    state from (source, target), and the revisit mask over every city."""
    in_dim, state = 2 * c.embed_dim + 3, c.layers * c.hidden_dim
    ops = cost.fill(2 * n) + cost.fill(2 * n * c.embed_dim) + n * (cost.fill(in_dim) + 6.0)
    ops += cost.matmul(n, in_dim, state) + 2.0 * n * state + cost.fill(n * state)
    if c.no_revisit:
        ops += cost.fill(n * c.n_cities) + n
    return ops


def decode(net: GRUNet, tables: Tables, indptr: np.ndarray, indices: np.ndarray, src: int, dst: int,
           n: int, *, greedy: bool, generator: torch.Generator | None = None,
           temperature: float = 1.0, ops: np.ndarray | None = None) -> list[list[int]]:
    """`n` paths from src to dst decoded as one batch: greedy (then all equal) or sampled.

    Sampling uses the Gumbel-max trick with one (SAMPLE_CHUNK, max_degree) noise draw per
    position, indexed by sample number, so sample i's path does not depend on n.
    With `ops` ((n,) floats) each row's operations are added to it (`citypath.cost`): its share of the
    set-up, its own hops, and an equal share of the work done once per hop for every row still decoding.
    """
    c = net.config
    count = ops is not None
    tok = tables.tokens
    cur = torch.full((n,), src, dtype=torch.int64)
    dst_t = torch.full((n,), dst, dtype=torch.int64)
    tok_dst = tok[dst_t]
    h = net.initial_state(tok[cur], tok_dst, cur, dst_t)
    paths = [[src] for _ in range(n)]
    active = np.ones(n, dtype=bool)
    visited = torch.zeros((n, c.n_cities), dtype=torch.bool) if c.no_revisit else None
    if visited is not None:
        visited[:, src] = True
    # Noise width fixed by the graph, not the batch, so a sample's random numbers never shift.
    width = int(np.diff(indptr).max()) if c.output == "neighbors" else c.n_cities
    if count:
        shared = cost.fill(c.n_cities) + cost.select(c.n_cities) if c.output == "neighbors" else 0.0
        ops += (decode_setup_ops(c, n) + shared) / n
    for _ in range(c.max_hops):
        rows = np.flatnonzero(active)
        rows_t = torch.from_numpy(rows)
        cur_a = cur[rows_t]
        x = net.step_inputs(tok[cur_a], tok_dst[rows_t], cur_a, dst_t[rows_t])
        out, h_a = net.gru(x[:, None], h[:, rows_t])
        h[:, rows_t] = h_a
        q, w = net.queries(out[:, 0], tok_dst[rows_t])
        if c.output == "neighbors":
            ids_np, mask_np = neighbour_rows(indptr, indices, cur_a.numpy())
            ids, mask = torch.from_numpy(ids_np.astype(np.int64)), torch.from_numpy(mask_np)
            scores = net.score(tok, tables.bias, q, w, cur_a, dst_t[rows_t], ids)
        else:
            ids = torch.arange(c.n_cities).expand(len(rows), -1)
            mask = torch.ones_like(ids, dtype=torch.bool)
            scores = net.score(tok, tables.bias, q, w, cur_a, dst_t[rows_t], ids)
        if visited is not None:
            mask = mask & ~visited[rows_t[:, None], ids]
        scores = scores.masked_fill(~mask, -math.inf)
        if not greedy:
            u = torch.rand((SAMPLE_CHUNK, width), generator=generator)[: n][rows_t, : scores.shape[1]]
            exponential = (-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20)   # Exp(1) noise
            gumbel = -torch.log(exponential)
            scores = scores / temperature + gumbel
        if count:
            # Once per hop for the batch: the scan for live rows, the noise draw (sampling), the all-done test.
            per_hop = cost.fill(2 * n) + (0.0 if greedy else cost.fill(SAMPLE_CHUNK * width))
            ops[rows] += hop_ops(c, scores.shape[1], not greedy) + per_hop / len(rows)
        best = scores.argmax(dim=1)
        stuck = ~mask.any(dim=1)
        nxt = ids.gather(1, best[:, None])[:, 0]
        for j, row in enumerate(rows.tolist()):
            if stuck[j]:
                active[row] = False          # every neighbour visited: give up, path ends here
                continue
            city = int(nxt[j])
            paths[row].append(city)
            if city == dst:
                active[row] = False
        cur[rows_t] = nxt
        if visited is not None:
            visited[rows_t, nxt] = True
        if not active.any():
            break
    return paths


# -- the routing model -------------------------------------------------------------------------

class GRUModel(BestOfNModel):
    """A trained GRU behind the routing protocol: step 1 greedy, step k best of k (verifier-ranked)."""

    family = "gru"
    network, config_class = GRUNet, GRUConfig
    # Its paths are a prefix (sample i is the same whatever K), but a step's counted operations are its share of
    # the batch that decoded it, and the batch is min(K - 1, SAMPLE_CHUNK) samples: K = 3 and K = 7 give step 2
    # different operations. So each K is its own replay.
    steps_are_prefix = False

    def __init__(self, name: str, card: dict, net: GRUNet):
        super().__init__(name, card, net)
        with torch.inference_mode():
            self.tables = Tables(tokens=net.tokens().detach().clone(), bias=net.bias.detach().clone())

    @classmethod
    def default_config(cls, g: CityGraph) -> GRUConfig:
        return GRUConfig(n_cities=g.n_cities)

    @classmethod
    def new_network(cls, config: GRUConfig, g: CityGraph | None = None) -> GRUNet:
        """The network with `g`'s city coordinates (zeros without a graph: a checkpoint's weights hold them)."""
        xy = city_xy(g.lat, g.lon) if g is not None else np.zeros((config.n_cities, 2), np.float32)
        return GRUNet(config, xy)

    def _decode(self, g: CityGraph, src: int, dst: int, n: int, *, greedy: bool, generator, ops: np.ndarray
                ) -> list[list[int]]:
        adj = g.adjacency
        return decode(self.net, self.tables, adj.indptr, adj.indices, src, dst, n, greedy=greedy, generator=generator,
                      temperature=self.config.temperature, ops=ops)
