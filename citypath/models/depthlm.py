"""depthlm: the post's first avenue as the post framed it, a causal transformer language model over city
tokens that thinks longer by looping its depth.

Tokens and objective are the post RNN's (`citypath.models.postrnn`): the source, the target, then the path so
far (which starts at the source); every position predicts the next city with a softmax over all 21,217 cities;
no neighbour mask, no revisit rule, so illegal jumps are possible and counted. Two inputs the post RNN does not
have, said on the card: each city's embedding is a learned table row **plus a learned projection of its
coordinates and fixed Fourier features of them**, used both for the input and (tied) for the output scores;
the output scores also add a **place term**, -(km from the point the model aims at)^2 / (2 sigma^2), where
the aimed point is the current city's place plus an offset the network predicts, and sigma too (a Gaussian
over the map, computed for every city: the softmax is still over all cities, nothing is masked); every
position's input also adds a projection of the **target's** coordinate features (the prompt's target, handed
to each position rather than left for attention to fetch); and each token's place in the sequence (a learned
position table).

Depth recurrence (Huginn, Geiping et al. 2025): prelude -> core (weight-tied layers) looped r times with the
prelude's output re-injected each loop (s <- core(adapter([s, e])), s starting at zero) -> coda -> scores.
Training draws r per batch from a log-normal Poisson around `loops_mean` and backpropagates through the last
`backprop_loops` loops only, so one set of weights answers at any r. The unlooped control is the same class
with r = 1 in training and at test (`loops_mean = 1`).

Test-time compute (`test_time`):
- "loops": step k decodes greedily with `loop_schedule[k - 1]` loops per token (1, 2, 3, 4, 6, 8, ...). Each
  step's answer is that decode as it is, not the best so far: the curve over steps is what loops alone do.
- "samples": step 1 greedy, step k the verifier's best of greedy + k - 1 samples, all at `sample_loops`
  loops (the post RNN's best-of-N; the unlooped control's mode, and `load_model(name + ".samples")`).
Compute is counted by the one convention (`citypath.cost`), per decoded token: every layer run at its context
length, each loop's adapter, the output projection and all n_cities scores, the choice, the bookkeeping.

    >>> m = load_model("depth-lm-small")                   # doctest: +SKIP
    >>> paths = list(m.refine(g, src, dst, steps=8))       # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from citypath import cost
from citypath.graph import CityGraph
from citypath.models.base import (
    UNTRAINED_MAX_STEPS,
    CheckpointError,
    CountedModel,
    frozen,
    sample_generator,
)
from citypath.models.postrnn import SAMPLE_CHUNK, hop_cap

EARTH_KM = 6371.0
LAT0 = math.radians(38.0)    # the equirectangular projection's standard parallel (mid-latitude of the US)
TEST_TIME = ("loops", "samples")


@dataclass(frozen=True)
class DepthLMConfig:
    """Everything needed to rebuild the model (stored in the card)."""

    n_cities: int
    dim: int = 64
    heads: int = 4
    mlp_dim: int = 128               # SwiGLU hidden width
    prelude_layers: int = 1
    core_layers: int = 2
    coda_layers: int = 1
    fourier: int = 32                # coordinate frequencies (2 features each: cos, sin), beside x and y
    place: bool = True               # the output's place term (a Gaussian around an aimed point)
    target_input: bool = True        # every position's input also gets a projection of the target's features
    min_wavelength_km: float = 40.0
    max_wavelength_km: float = 4000.0
    loops_mean: float = 4.0          # training: mean loops per batch (1: the unlooped control)
    loops_max: int = 16              # training: loops drawn are capped here
    backprop_loops: int = 2          # training: gradients flow through the last this many loops
    loop_schedule: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)   # test: loops at step k (mode "loops")
    test_time: str = "loops"         # "loops" or "samples" (best-of-N at `sample_loops`)
    sample_loops: int = 4
    max_hops: int = 128              # decoding cap (the longest SPD path has 82 hops on the default graph)
    temperature: float = 1.0
    train_negatives: int = 2048      # sampled softmax in training (0: full); always full at inference
    train_local: int = 64            # training: each position's own city and nearest neighbours summed exactly

    def __post_init__(self):
        if self.test_time not in TEST_TIME:
            raise ValueError(f"test_time={self.test_time!r}: one of {', '.join(TEST_TIME)}")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} is not a multiple of heads={self.heads}")
        if not self.loop_schedule or min(self.loop_schedule) < 1:
            raise ValueError(f"loop_schedule={self.loop_schedule}: positive loop counts")
        object.__setattr__(self, "loop_schedule", tuple(int(r) for r in self.loop_schedule))

    @property
    def max_steps(self) -> int:
        """Steps a card allows: one per loop count of the schedule (mode "loops"), else best-of-32."""
        return len(self.loop_schedule) if self.test_time == "loops" else UNTRAINED_MAX_STEPS

    @property
    def max_len(self) -> int:
        return self.max_hops + 3


SIZES = {
    # Parameters match the post RNN's sizes (most of both are the city table): small 1.57M, large 6.7M (4.3x).
    "small": dict(dim=64, heads=4, mlp_dim=128),
    "large": dict(dim=224, heads=7, mlp_dim=448),
}


def fourier_frequencies(c: DepthLMConfig) -> np.ndarray:
    """(fourier, 2) spatial frequencies in cycles per km: wavelengths geometric from max to min, directions
    spread by the golden angle (deterministic: a function of the config)."""
    k = np.arange(c.fourier)
    wavelength = c.max_wavelength_km * (c.min_wavelength_km / c.max_wavelength_km) ** (k / max(c.fourier - 1, 1))
    angle = k * math.pi * (3 - math.sqrt(5))
    return np.stack([np.cos(angle), np.sin(angle)], axis=1) / wavelength[:, None]


PLACE_SCALE_KM = 1000.0    # coordinates enter the network in units of 1,000 km


def city_xy_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n, 2) km on an equirectangular plane (standard parallel 38 N)."""
    return np.stack([EARTH_KM * np.radians(lon) * math.cos(LAT0), EARTH_KM * np.radians(lat)], axis=1)


class Layer(nn.Module):
    """A pre-norm transformer layer: causal multi-head attention, then a SwiGLU MLP. With a cache (a dict this
    layer keeps its keys and values in) it attends to every earlier position it has seen."""

    def __init__(self, c: DepthLMConfig):
        super().__init__()
        self.heads = c.heads
        self.norm1, self.norm2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.qkv = nn.Linear(c.dim, 3 * c.dim, bias=False)
        self.proj = nn.Linear(c.dim, c.dim, bias=False)
        self.gate_up = nn.Linear(c.dim, 2 * c.mlp_dim, bias=False)
        self.down = nn.Linear(c.mlp_dim, c.dim, bias=False)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None and "k" in cache:
            k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
        if cache is not None:
            cache["k"], cache["v"] = k, v
        # New positions come last: causal within them, all earlier (cached) positions visible.
        causal = t > 1
        if causal and k.shape[2] != t:
            mask = torch.ones(t, k.shape[2], dtype=torch.bool).tril(k.shape[2] - t)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        gate, up = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class DepthLM(nn.Module):
    """City + position embedding -> prelude -> core looped r times with input injection -> coda -> tied scores.
    `forward` is the teacher-forced loss; `run` the same network over new tokens with per-layer caches."""

    def __init__(self, config: DepthLMConfig, xy_km: np.ndarray | None = None):
        super().__init__()
        c = self.config = config
        self.table = nn.Embedding(c.n_cities, c.dim)
        nn.init.normal_(self.table.weight, std=0.02)
        self.position = nn.Embedding(c.max_len, c.dim)
        nn.init.normal_(self.position.weight, std=0.02)
        xy = np.zeros((c.n_cities, 2)) if xy_km is None else np.asarray(xy_km, np.float64)
        # The coordinate features are a fixed function of each city's place (stored with the weights): its
        # place in units of 1,000 km (centred), and cos and sin of its phase at each frequency.
        phase = 2 * math.pi * xy @ fourier_frequencies(c).T
        centred = (xy - xy.mean(axis=0)) / PLACE_SCALE_KM
        self.register_buffer("xy", torch.from_numpy(centred).float())
        self.register_buffer("features", torch.from_numpy(
            np.concatenate([centred, np.cos(phase), np.sin(phase)], axis=1)).float())
        self.coords = nn.Linear(2 + 2 * c.fourier, c.dim, bias=False)
        nn.init.normal_(self.coords.weight, std=0.02)
        self.target = nn.Linear(2 + 2 * c.fourier, c.dim, bias=False) if c.target_input else None
        if self.target is not None:
            nn.init.normal_(self.target.weight, std=0.02)
        # The place term: an offset from the current city (in 1,000 km) and log(1 / sigma^2).
        self.aim = nn.Linear(c.dim, 3) if c.place else None
        if self.aim is not None:
            nn.init.zeros_(self.aim.weight)
            nn.init.constant_(self.aim.bias, 0.0)
        self.prelude = nn.ModuleList(Layer(c) for _ in range(c.prelude_layers))
        self.adapter = nn.Linear(2 * c.dim, c.dim, bias=False)
        self.core = nn.ModuleList(Layer(c) for _ in range(c.core_layers))
        self.coda = nn.ModuleList(Layer(c) for _ in range(c.coda_layers))
        self.norm = nn.LayerNorm(c.dim)
        self.out = nn.Linear(c.dim, c.dim)
        self.bias = nn.Parameter(torch.zeros(c.n_cities))
        self._cities: torch.Tensor | None = None     # inference: every city's vector, computed once

    def city_vectors(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Each city's vector (its table row plus its projected coordinate features): input and output."""
        if ids is None:
            if not torch.is_grad_enabled() and not self.training:
                if self._cities is None:
                    self._cities = self.city_vectors(torch.arange(self.config.n_cities))
                return self._cities
            ids = torch.arange(self.config.n_cities)
        return self.table(ids) + self.coords(self.features[ids])

    def train(self, mode: bool = True):
        self._cities = None
        return super().train(mode)

    def run(self, tokens: torch.Tensor, start: int, loops: int, caches: dict | None = None,
            grad_loops: int | None = None, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Final states (B, T, dim) of `tokens` placed at positions start.. after `loops` loops. With `caches` (a
        dict, filled on first use) earlier positions are read from and new ones added to it. With `grad_loops`
        only the last that many loops carry gradients (truncated backpropagation). `targets` (B,): each row's
        target city (needed with `target_input`)."""
        t = tokens.shape[1]
        x = self.city_vectors(tokens.reshape(-1)).view(*tokens.shape, -1) + self.position.weight[start:start + t]
        if self.target is not None:
            x = x + self.target(self.features[targets])[:, None]
        cache = (lambda key: caches.setdefault(key, {})) if caches is not None else (lambda key: None)
        for i, layer in enumerate(self.prelude):
            x = layer(x, cache(("prelude", i)))
        e, s = x, torch.zeros_like(x)
        free = 0 if grad_loops is None else max(loops - grad_loops, 0)
        for r in range(loops):
            with torch.set_grad_enabled(torch.is_grad_enabled() and r >= free):
                s = self.adapter(torch.cat([s, e], dim=-1))
                for j, layer in enumerate(self.core):
                    s = layer(s, cache(("core", r, j)))
        for i, layer in enumerate(self.coda):
            s = layer(s, cache(("coda", i)))
        return self.norm(s)

    def head(self, z: torch.Tensor, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """From final states z (..., dim) at cities `current` (...): the query row that scores cities' vectors,
        and the place term's (aimed x, aimed y, 1 / sigma^2) (None without one)."""
        h = self.out(z)
        if self.aim is None:
            return h, None
        a = self.aim(z)
        return h, torch.cat([self.xy[current] + a[..., :2], torch.exp(a[..., 2:].clamp(-10.0, 12.0))], dim=-1)

    def scores(self, h: torch.Tensor, aim: torch.Tensor | None, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of cities `ids` (default: every city) for each row: h . city vector + bias + place term."""
        vectors = self.city_vectors(ids)
        bias = self.bias if ids is None else self.bias[ids]
        out = h @ vectors.T + bias
        if aim is not None:
            xy = self.xy if ids is None else self.xy[ids]
            d2 = (xy * xy).sum(-1) - 2 * aim[..., :2] @ xy.T + (aim[..., :2] ** 2).sum(-1, keepdim=True)
            out = out - 0.5 * aim[..., 2:] * d2
        return out

    def logits(self, z: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Scores of every city for each final state row at city `current`: (..., n_cities)."""
        return self.scores(*self.head(z, current))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, negatives: torch.Tensor, loops: torch.Tensor,
                local: torch.Tensor | None = None, local_km: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed cross-entropy, number of predictions) of a batch at `loops` loops (a 0-d tensor).

        tokens (B, T): [src, dst, src, c1, ..., dst, pad...]; position i >= 2 predicts token i + 1 where
        mask[:, i + 1]. With `negatives` the softmax is sampled as the post RNN's (the true city plus shared
        uniform negatives, corrected by log(n_cities / n_negatives)); empty: the full softmax. With `local`
        ((B, T - 1, k) city ids, -1 padding: the cities nearest each position's city, itself included, within
        `local_km` of it) the partition function sums those cities exactly and estimates only the rest from
        the negatives (a negative within the position's local radius is left out: it is counted exactly), so
        the estimate's variance falls where the place term puts the mass. Training only; inference is the
        full softmax.
        """
        z = self.run(tokens[:, :-1], 0, int(loops), grad_loops=self.config.backprop_loops, targets=tokens[:, 1])
        sel = mask[:, 1:].clone()
        sel[:, :2] = False
        h, aim = self.head(z[sel], tokens[:, :-1][sel])
        target = tokens[:, 1:][sel]
        if negatives.numel() == 0:
            return F.cross_entropy(self.scores(h, aim), target, reduction="sum"), torch.tensor(float(len(target)))
        pos = self.row_scores(h, aim, target[:, None])[:, 0]
        neg = self.scores(h, aim, negatives) + float(np.log(self.config.n_cities / len(negatives)))
        drop = negatives[None, :] == target[:, None]
        parts = [pos[:, None]]
        if local is not None:
            ids, radius = local[sel], local_km[sel]
            here = self.xy[tokens[:, :-1][sel]]
            far = ((self.xy[negatives][None] - here[:, None]) ** 2).sum(-1).sqrt() * PLACE_SCALE_KM
            drop = drop | (far <= radius[:, None])
            near = self.row_scores(h, aim, ids.clamp_min(0))
            parts.append(near.masked_fill((ids < 0) | (ids == target[:, None]), -torch.inf))
        parts.append(neg.masked_fill(drop, -torch.inf))
        logz = torch.logsumexp(torch.cat(parts, dim=1), dim=1)
        return (logz - pos).sum(), torch.tensor(float(len(target)))

    def row_scores(self, h: torch.Tensor, aim: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
        """Scores of each row's own cities: h (P, dim), ids (P, k) -> (P, k)."""
        out = torch.einsum("pd,pkd->pk", h, self.city_vectors(ids.reshape(-1)).view(*ids.shape, -1)) + self.bias[ids]
        if aim is not None:
            out = out - 0.5 * aim[:, 2:] * ((self.xy[ids] - aim[:, None, :2]) ** 2).sum(-1)
        return out


def sample_loops(rng: np.random.Generator, c: DepthLMConfig) -> int:
    """Training loops for one batch: 1 + Poisson(lambda), lambda log-normal (sigma 0.5) with mean loops_mean - 1,
    capped at loops_max (Huginn's schedule, scaled to a CPU)."""
    if c.loops_mean <= 1:
        return 1
    sigma = 0.5
    lam = rng.lognormal(math.log(c.loops_mean - 1) - sigma ** 2 / 2, sigma)
    return int(min(1 + rng.poisson(lam), c.loops_max))


# -- counting -------------------------------------------------------------------------------

def token_ops(c: DepthLMConfig, loops: int, context: int) -> float:
    """Operations of one token through the network at `loops` loops, attending to `context` positions (itself
    included): its embedding (a table row, its features' projection, the position), every layer, each loop's
    adapter and concatenation, and the final norm (the output head is `choice_ops`)."""
    layer = cost.transformer_layer(c.dim, context, c.heads, c.mlp_dim)
    embed = cost.fill(c.dim) + (2 if c.target_input else 1) * cost.matmul(1, 2 + 2 * c.fourier, c.dim) \
        + (3 if c.target_input else 2) * c.dim
    adapter = cost.fill(2 * c.dim) + cost.matmul(1, 2 * c.dim, c.dim)
    layers = (c.prelude_layers + c.coda_layers + loops * c.core_layers) * layer
    return embed + layers + loops * adapter + cost.layer_norm(c.dim)


def choice_ops(c: DepthLMConfig, sampled: bool) -> float:
    """One row's next city from its final state: the output projection, every city's score (a product with the
    city vectors, plus bias), the place term (the aim's head, then per city a 2-d product, its squared norm
    added, the aim's, the scale: 5 more), then the argmax, or the scores / temperature, softmax, cumulative
    sum and a binary search."""
    n = c.n_cities
    ops = cost.matmul(1, c.dim, c.dim) + c.dim + cost.matmul(1, c.dim, n) + n
    if c.place:
        ops += cost.matmul(1, c.dim, 3) + 3 + 3 + cost.matmul(1, 2, n) + 5 * n
    if sampled:
        return ops + cost.fill(n) + cost.softmax(n) + cost.fill(n) + 2.0 + math.log2(n) + 1.0
    return ops + cost.select(n)


# -- decoding -------------------------------------------------------------------------------

def decode(net: DepthLM, srcs, dsts, *, loops: int, greedy: bool = True, generator: torch.Generator | None = None,
           temperature: float = 1.0, hop_caps=None, ops: np.ndarray | None = None) -> list[list[int]]:
    """One path per (src, dst) row at `loops` loops, decoded as one batch over the full vocabulary with
    per-layer key/value caches; a row leaves the batch when it emits its target or after hop_caps[row] hops.

    Sampling draws one uniform per position for each of SAMPLE_CHUNK rows (indexed by the row's number in its
    chunk), so sample i's path does not depend on how many are drawn. With `ops` ((n,) floats) each row's
    operations are added to it: its own tokens, its choices, its share of the batch's bookkeeping.
    """
    c = net.config
    src = torch.as_tensor(np.asarray(srcs, dtype=np.int64))
    dst = torch.as_tensor(np.asarray(dsts, dtype=np.int64))
    n = len(src)
    cap = np.asarray(hop_caps, dtype=np.int64) if hop_caps is not None else np.full(n, c.max_hops)
    cap = np.minimum(cap, c.max_hops)
    paths = [[int(s)] for s in src.tolist()]
    live = np.flatnonzero((src != dst).numpy() & (cap > 0))
    if ops is not None:
        ops += cost.fill(6 * n) / n + 3 * token_ops(c, loops, 2)        # the prompt (source, target, source)
    if not len(live):
        return paths
    caches: dict = {}
    sel = torch.from_numpy(live)
    targets = dst[sel]
    h = net.run(torch.stack([src[sel], targets, src[sel]], dim=1), 0, loops, caches, targets=targets)[:, -1]
    rows, cur = live, src[sel]
    for hop in range(int(cap.max())):
        scores = net.logits(h, cur)
        if ops is not None:
            ops[rows] += choice_ops(c, not greedy) + cost.fill(4 * n) / len(rows) + 3.0
        if greedy:
            nxt = scores.argmax(dim=1)
        else:
            u = torch.rand(SAMPLE_CHUNK, generator=generator)[:n][torch.from_numpy(rows)]
            cdf = torch.softmax(scores / temperature, dim=1).cumsum(dim=1)
            nxt = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(1).clamp_max(c.n_cities - 1)
        keep = []
        for i, (row, city) in enumerate(zip(rows.tolist(), nxt.tolist())):
            paths[row].append(city)
            if city != int(dst[row]) and hop + 1 < cap[row]:
                keep.append(i)
        if not keep:
            break
        if len(keep) < len(rows):
            k = torch.tensor(keep)
            for cache in caches.values():
                cache["k"], cache["v"] = cache["k"][k], cache["v"][k]
            rows, nxt, targets = rows[keep], nxt[k], targets[k]
        if ops is not None:
            ops[rows] += token_ops(c, loops, hop + 4)
        h, cur = net.run(nxt[:, None], hop + 3, loops, caches, targets=targets)[:, -1], nxt
    return paths


# -- the routing model ----------------------------------------------------------------------

class DepthLMModel(CountedModel):
    """The depth-recurrent LM behind the routing protocol: step k decodes with the k-th loop count (mode
    "loops"), or is the verifier's best of greedy + k - 1 samples (mode "samples")."""

    family = "depthlm"
    network = DepthLM
    config_class = DepthLMConfig

    def __init__(self, name: str, card: dict, net: DepthLM):
        super().__init__(name, card)
        self.net = frozen(net)
        self.config = net.config

    @classmethod
    def default_config(cls, g: CityGraph) -> DepthLMConfig:
        return DepthLMConfig(n_cities=g.n_cities)

    @classmethod
    def new_network(cls, config: DepthLMConfig, g: CityGraph | None = None) -> DepthLM:
        """The network; given `g`, its cities' coordinates (a checkpoint's own are read with its weights)."""
        return DepthLM(config, None if g is None else city_xy_km(g.lat, g.lon))

    def variant(self, test_time: str, loops: int | None = None) -> DepthLMModel:
        """The same weights answering with the other kind of test-time compute: "samples" (best-of-N at `loops`,
        default the training mean rounded) or "loops"; named `<name>.samples` / `<name>.loops`."""
        if test_time not in TEST_TIME:
            raise ValueError(f"test_time={test_time!r}: one of {', '.join(TEST_TIME)}")
        loops = int(loops if loops is not None else max(1, round(self.config.loops_mean)))
        config = replace(self.config, test_time=test_time, sample_loops=loops)
        card = {**self.card, "config": asdict(config), "name": f"{self.name}.{test_time}",
                "max_steps": config.max_steps}
        model = DepthLMModel(card["name"], card, self.net)
        model.config = config
        return model

    def loops_at(self, step: int) -> int:
        """Loops per token at step `step` (1-based)."""
        c = self.config
        if c.test_time == "samples":
            return c.sample_loops
        return c.loop_schedule[min(step, len(c.loop_schedule)) - 1]

    def refine(self, g: CityGraph, src: int, dst: int, steps: int = 1, *, seed: int = 0) -> Iterator[list[int]]:
        """Yield `steps` paths: per step, the greedy decode at that step's loops ("loops"), or the verifier's best
        of greedy + k - 1 samples ("samples")."""
        return (p for p, _ in self.refine_with_compute(g, src, dst, steps, seed=seed))

    def refine_with_compute(self, g: CityGraph, src: int, dst: int, steps: int = 1, *, seed: int = 0
                            ) -> Iterator[tuple[list[int], float]]:
        """`refine`'s paths, each with its step's operations (its decode; step 1 also the hop cap's straight
        line; in mode "samples" the verifier's scoring of the step's candidate)."""
        src, dst, steps = self.check_query(g, src, dst, steps)
        if self.config.n_cities != g.n_cities:
            raise CheckpointError(f"model {self.name!r} has {self.config.n_cities} city tokens, "
                                  f"the graph {g.n_cities}")
        if src == dst:
            return iter([([src], 0.0)] * steps)
        if self.config.test_time == "samples":
            return self.best_so_far_with_compute(g, src, dst, self._samples(g, src, dst, steps, seed))
        return self._loops(g, src, dst, steps)

    def _loops(self, g: CityGraph, src: int, dst: int, steps: int) -> Iterator[tuple[list[int], float]]:
        """Step k: the greedy decode at the k-th loop count; past the schedule's end the last answer stands and
        nothing more is computed (0 operations, as a halted model)."""
        cap = hop_cap(g, src, dst, self.config.max_hops)
        path: list[int] = []
        for k in range(1, min(steps, len(self.config.loop_schedule)) + 1):
            ops = np.array([cost.haversine(1) if k == 1 else 0.0])
            with torch.inference_mode():
                path = decode(self.net, [src], [dst], loops=self.loops_at(k), hop_caps=[cap], ops=ops)[0]
            yield path, float(ops[0])
        for _ in range(steps - len(self.config.loop_schedule)):
            yield list(path), 0.0

    def _samples(self, g: CityGraph, src: int, dst: int, steps: int, seed: int
                 ) -> Iterator[tuple[list[int], float]]:
        c = self.config
        cap = hop_cap(g, src, dst, c.max_hops)
        ops = np.array([cost.haversine(1)])
        with torch.inference_mode():
            yield decode(self.net, [src], [dst], loops=c.sample_loops, hop_caps=[cap], ops=ops)[0], float(ops[0])
        done, chunk = 1, 0
        while done < steps:
            take = min(SAMPLE_CHUNK, steps - done)
            ops = np.zeros(take)
            with torch.inference_mode():
                paths = decode(self.net, np.full(take, src), np.full(take, dst), loops=c.sample_loops, greedy=False,
                               generator=sample_generator(seed, chunk), temperature=c.temperature,
                               hop_caps=np.full(take, cap), ops=ops)
            yield from zip(paths, ops.tolist())
            done += take
            chunk += 1

    def path_nll(self, g: CityGraph, path: list[int], loops: int | None = None) -> float | None:
        """Teacher-forced cross-entropy per predicted city of `path` at `loops` loops (default: step 1's),
        softmax over every city (nats)."""
        self.check_graph(g)
        ids = [g.check_id(c) for c in path]
        if len(ids) < 2:
            return None
        tokens = torch.tensor([[ids[0], ids[-1], *ids[: self.config.max_hops + 1]]])
        mask = torch.ones_like(tokens, dtype=torch.bool)
        with torch.inference_mode():
            loss, n = self.net(tokens, mask, torch.zeros(0, dtype=torch.int64),
                               torch.tensor(loops if loops is not None else self.loops_at(1)))
        return float(loss / n)
