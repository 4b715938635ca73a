"""The one protocol every model family implements, and the checkpoint format they share.

A model answers a (src, dst) query with a sequence of paths, one per step of test-time
compute: `refine(g, src, dst, steps=K)` yields exactly K paths (lists of city ids); step
k's path is the model's answer after k steps. The app, the evaluation harness and the CLI
only ever use this protocol, never a family's internals.

A checkpoint is `checkpoints/<name>.safetensors` (weights; never pickle) beside
`checkpoints/<name>.json` (the card: family, size, parameters, config, the graph it was
trained on, how it was trained, its measured metrics).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citypath.cache import write_atomic
from citypath.graph import CityGraph

# Past this many steps a request is refused rather than left to run for hours.
STEPS_LIMIT = 1024
# Best-of-N samples decoded per batch; also fixes which random numbers each sample uses (`sample_generator`).
SAMPLE_CHUNK = 32
# The steps an untrained model's card allows where its config has no `max_steps` (the best-of-N families).
UNTRAINED_MAX_STEPS = 32


class ModelError(Exception):
    """Base for everything that can go wrong finding, loading or running a model."""


class ModelNotFound(ModelError, LookupError):
    """No checkpoint of that name; the message lists the available ones."""


class CheckpointError(ModelError):
    """A checkpoint exists but cannot be used (corrupt, truncated, unknown family); names the file."""


class IncompatibleGraph(CheckpointError):
    """The checkpoint was trained on another graph than the one it is asked to route on."""


def check_steps(steps: object, max_steps: int | None = None) -> int:
    """`steps` as a positive int, or ValueError saying what is allowed."""
    if isinstance(steps, bool) or not isinstance(steps, int) and not hasattr(steps, "__index__"):
        raise ValueError(f"steps must be a positive integer, not {steps!r:.40}")
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps={steps}: at least 1 step is needed")
    if steps > STEPS_LIMIT:
        raise ValueError(f"steps={steps} is over the limit of {STEPS_LIMIT} steps per query")
    return steps


@dataclass(frozen=True)
class StateView:
    """One per-city quantity a model holds after a step (what it "thinks"): values[i] for city i, NaN = none."""

    name: str           # e.g. "estimated km to target"
    unit: str           # e.g. "km"; "" for flags and scores
    values: np.ndarray  # (n_cities,) float64


class RoutingModel(ABC):
    """A model that routes between cities and can spend more steps to refine its answer.

    Subclasses set `family` and implement `refine`. A family with a network names it (`network`, built from
    its `config_class`) and gets `from_checkpoint` and `untrained` from here; it is constructed as
    `cls(name, card, net)`. Inference must not mutate the model, so one loaded model serves many threads.
    """

    family: str = "abstract"
    network: type | None = None       # the family's nn.Module, built as network(config) (`new_network`)
    config_class: type | None = None  # its config dataclass, as a card's "config" holds it
    weights_cast: str = "float"       # how stored weights are read: "float", "double" or "stored" (as saved)

    def __init__(self, name: str, card: dict, net=None):
        self.name = name
        self.card = card
        if net is not None:
            # Eval mode, not frozen: training hands its live module in to decode validation pairs.
            self.net = net.eval()
            self.config = net.config

    @property
    def num_parameters(self) -> int:
        return int(self.card["num_parameters"])

    @property
    def max_steps(self) -> int:
        """The most steps this model was trained or tuned for (more may still be asked for)."""
        return int(self.card["max_steps"])

    @property
    def graph_fingerprint(self) -> str | None:
        return self.card["graph"]["fingerprint"]

    @property
    def learned(self) -> bool:
        """False for rows with nothing learned: the classical algorithms, and the controls whose hand-set part
        replaces everything their model learned (looped's control keeps the learned min head: True)."""
        return bool(self.card.get("learned", True))

    def scaffold_control(self) -> RoutingModel | None:
        """This model's hand-written scaffold with the learned part replaced by its hand-set equivalent (the
        attribution control: learned gain = this model against it on the same pairs), or None where the
        family has no hand-written search around a learned part."""
        return None

    def check_graph(self, g: CityGraph) -> None:
        """Refuse a graph other than the one the checkpoint was trained on (a card whose graph fingerprint is
        null, like the classical algorithms', fits any graph)."""
        if self.graph_fingerprint is not None and g.fingerprint != self.graph_fingerprint:
            raise IncompatibleGraph(
                f"model {self.name!r} was trained on graph {self.graph_fingerprint[:12]} "
                f"({self.card['graph'].get('config')}), not on {g.fingerprint[:12]} ({g.config}); "
                "load the graph it was trained on, or retrain it")

    def check_query(self, g: CityGraph, src: int, dst: int, steps: object) -> tuple[int, int, int]:
        """Validate a refine() call; returns (src, dst, steps)."""
        self.check_graph(g)
        return g.check_id(src), g.check_id(dst), check_steps(steps)

    @abstractmethod
    def refine(self, g: CityGraph, src: int, dst: int, steps: int = 1, *, seed: int = 0) -> Iterator[list[int]]:
        """Yield exactly `steps` paths from src to dst; path k is the answer after k steps.

        Deterministic for a given seed. src == dst yields [src] at every step.
        """

    @staticmethod
    def best_so_far(g: CityGraph, src: int, dst: int, candidates: Iterable) -> Iterator[list[int]]:
        """For each candidate answer in turn, the best one so far by the one verifier order
        (`citypath.metrics.verifier_key`): the promise that more steps never make an answer worse."""
        from citypath.metrics import verifier_key

        best, best_key = None, None
        for path in candidates:
            key = verifier_key(g, path, src, dst)
            if best_key is None or key < best_key:
                best, best_key = path, key
            yield list(best)

    @classmethod
    def best_so_far_with_compute(cls, g: CityGraph, src: int, dst: int, runs: Iterable[tuple[list[int], float]]
                                 ) -> Iterator[tuple[list[int], float]]:
        """`best_so_far` over (path, operations) pairs, lazily: each best path with the operations of its step,
        the verifier's scoring of that step's candidate included (`citypath.cost.verify`)."""
        from citypath import cost

        flops: list[float] = []

        def paths():
            for path, f in runs:
                # A step that computed nothing (halted, or an exact answer repeated) has nothing new to verify.
                flops.append(f + cost.verify(max(len(path) - 1, 0)) if f else 0.0)
                yield path

        for best in cls.best_so_far(g, src, dst, paths()):
            yield best, flops[-1]

    def flops_per_step(self, g: CityGraph, src: int, dst: int) -> float:
        """Estimated floating-point operations of one step on this query (for compute plots)."""
        return float("nan")

    def step_flops(self, g: CityGraph, src: int, dst: int, steps: int) -> list[float]:
        """FLOPs of each of the first `steps` steps on this query.

        Families whose steps cost different amounts (a frontier that grows and dies out) override
        this with what each step actually processed; the default is `flops_per_step` every step.
        """
        steps = check_steps(steps)
        return [self.flops_per_step(g, src, dst)] * steps

    def refine_with_compute(self, g: CityGraph, src: int, dst: int, steps: int = 1, *, seed: int = 0
                            ) -> Iterator[tuple[list[int], float]]:
        """`refine`'s paths, each with the FLOPs its step spent (what `step_flops` reports).

        Families that count as they think (a frontier, a corridor, halting) override this so one run
        gives both; the default pairs `refine` with `step_flops`.
        """
        src, dst, steps = self.check_query(g, src, dst, steps)
        return zip(self.refine(g, src, dst, steps, seed=seed), self.step_flops(g, src, dst, steps))

    # Whether `refine_many` computes several queries together (one batch for all their samples, as a server does
    # for a crowd of visitors of the same model); False: one query at a time.
    batches_queries: bool = False

    def refine_many(self, g: CityGraph, queries: Sequence[tuple[int, int]], steps: int = 1, *, seed: int = 0
                    ) -> list[list[tuple[list[int], float]]]:
        """`refine_with_compute` of each (src, dst) query, as a list of its steps' (path, operations).

        A family with `batches_queries` decodes the queries together: each query's counted operations are what
        it costs alone, and its paths are its own (its own random streams); only the float32 rounding of a
        batched product can differ (see the family's `decode`). The default runs them one at a time.
        """
        return [list(self.refine_with_compute(g, s, t, steps, seed=seed)) for s, t in queries]

    def path_nll(self, g: CityGraph, path: list[int]) -> float | None:
        """Mean negative log-likelihood per predicted city of `path` (src first, dst last) under the model.

        For language-model families (the post's metric, in nats); None for families that do not
        assign a probability to a whole path.
        """
        return None

    has_state_view: bool = False

    # Whether `refine_with_compute(steps=K)` is a prefix of `refine_with_compute(steps=M)` for every M > K: the same
    # K paths and the same operations per step (the seed alike). Where it holds, a replay computed for M steps
    # serves any K <= M (`citypath.replay.ReplayStore` keeps one record per pair, extended when more steps are
    # asked for), so moving the steps slider waits for nothing already computed. False unless a family says
    # so: a family whose early steps depend on how many steps were asked for (a schedule over K, a batch
    # shared by K samples) must leave it False. tests/test_replay.py checks every shipped family that claims it.
    steps_are_prefix: bool = False

    def trace(self, g: CityGraph, src: int, dst: int, steps: int = 1) -> Iterator[list[StateView]]:
        """Per step, the model's internal state over cities (a list of `StateView`s), where a family has one.

        Families without a per-city state raise NotImplementedError saying so.
        """
        raise NotImplementedError(f"model family {self.family!r} has no per-city state view")

    @classmethod
    def read_config(cls, card: dict):
        """The family's config from a card (keys the config does not have are ignored)."""
        return config_from_dict(cls.config_class, card["config"])

    @classmethod
    def default_config(cls, g: CityGraph):
        """The config an untrained model of this family gets on `g` when none is given."""
        return cls.config_class()

    @classmethod
    def new_network(cls, config, g: CityGraph | None = None):
        """A freshly initialised network for `config` (`g`, where given, for a network that holds graph data;
        loading a checkpoint overwrites it)."""
        return cls.network(config)

    @classmethod
    def from_checkpoint(cls, name: str, card: dict, weights_path: Path | None) -> RoutingModel:
        """Build the model from its card and safetensors weights: the family's `network` for the card's config,
        its weights loaded (`load_network`). Families without a network (the classical rows) override this."""
        if cls.network is None:
            raise CheckpointError(f"model family {cls.family!r} has no network to load {weights_path} into")
        build = lambda: cls.new_network(cls.read_config(card))  # noqa: E731
        return cls(name, card, load_network(build, weights_path, cls.family, cast=cls.weights_cast))

    @classmethod
    def untrained(cls, g: CityGraph, config=None, name: str | None = None, seed: int = 0) -> RoutingModel:
        """A randomly initialised model for `g` (tests, experiments): the family's network, seeded."""
        import torch

        config = config or cls.default_config(g)
        name = name or f"{cls.family}-untrained"
        torch.manual_seed(seed)
        net = cls.new_network(config, g)
        return cls(name, untrained_card(g, name, cls.family, net, config), net)

    def control_card(self, about: str, **fields) -> dict:
        """The card of this model's attribution control (`scaffold_control`): this card as `<name>.scaffold`,
        nothing learned, what it is (`about`); `fields` change any of that."""
        return {**self.card, "name": f"{self.name}.scaffold", "num_parameters": 0, "learned": False,
                "control_of": self.name, "about": about, **fields}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, family={self.family!r}, "
                f"num_parameters={self.num_parameters:,}, max_steps={self.max_steps})")



def greedy_walk(indptr: np.ndarray, indices: np.ndarray, src: int, dst: int, max_hops: int, score) -> list[int]:
    """Walk from src along graph edges: next city = the unvisited neighbour with the lowest score.

    `score(cur, lo, hi)` scores the neighbours `indices[lo:hi]` of `cur` (lower is better; inf: never).
    Stops at dst, at a dead end (every neighbour visited: the path then misses the target) or after
    max_hops hops. Every hop is a graph edge, so the path is always legal.
    """
    visited = np.zeros(len(indptr) - 1, dtype=bool)
    path, cur = [src], src
    visited[src] = True
    while cur != dst and len(path) <= max_hops:
        lo, hi = indptr[cur], indptr[cur + 1]
        nb = indices[lo:hi]
        s = np.array(score(cur, lo, hi), dtype=np.float64)
        s[visited[nb]] = np.inf
        j = int(np.argmin(s))
        if not np.isfinite(s[j]):
            break
        cur = int(nb[j])
        visited[cur] = True
        path.append(cur)
    return path


def sample_generator(seed: int, chunk: int):
    """The torch random stream of one chunk of samples, a pure function of (seed, chunk): sample i of a
    query is the same whatever the number of steps asked for."""
    import torch

    digest = hashlib.blake2b(f"{seed}:{chunk}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def load_network(build, weights_path: Path, family: str, *, cast: str = "float"):
    """The network `build()` returns, with the safetensors weights at `weights_path` read as `cast` ("float",
    "double", or "stored": as saved), in inference mode (eval, no gradients); CheckpointError naming the file
    when they do not fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    read = {"float": lambda v: v.float(), "double": lambda v: v.double(), "stored": lambda v: v}[cast]
    try:
        net = build()
        net.load_state_dict({k: read(v) for k, v in load_file(str(weights_path)).items()})
    except (SafetensorError, OSError, KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"cannot load {family} weights {weights_path}: {e}") from e
    return frozen(net)


def frozen(net):
    """`net` in eval mode with gradients off: inference must not mutate a model shared by threads."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def config_from_dict(cls, d: dict):
    """A config dataclass from a card's dict, ignoring keys the class does not have (e.g. training-only ones)."""
    from dataclasses import fields

    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def read_card(path: Path) -> dict:
    """A checkpoint's JSON card, or CheckpointError naming the file."""
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint card {path} cannot be read: {e}") from e
    missing = [k for k in ("family", "num_parameters", "max_steps", "graph") if k not in card]
    if missing:
        raise CheckpointError(f"checkpoint card {path} lacks {', '.join(missing)}")
    return card


class CountedModel(RoutingModel):
    """A family whose `refine_with_compute` counts its operations in the run that makes its paths
    (`citypath.cost`): `step_flops` and `flops_per_step` read that one run instead of an estimate."""

    steps_are_prefix = True     # one run per query whose step k never looks at K (a subclass that does says False)

    def step_flops(self, g: CityGraph, src: int, dst: int, steps: int) -> list[float]:
        """Operations of each of the first `steps` steps on this query, as the run spends them."""
        return [f for _, f in self.refine_with_compute(g, src, dst, steps)]

    def flops_per_step(self, g: CityGraph, src: int, dst: int) -> float:
        """Mean operations a step over the model's `max_steps` on this query (zeros after halting included)."""
        return float(np.mean(self.step_flops(g, src, dst, self.max_steps)))


class StepwiseModel(CountedModel):
    """A family whose steps come from one deterministic run: `_run(g, src, dst, steps)` yields, per step, the
    raw path, the FLOPs that step processed, and the family's state (for `trace`). `refine` is the verifier's
    best so far of those paths; the FLOPs and the paths come from the same run."""

    @abstractmethod
    def _run(self, g: CityGraph, src: int, dst: int, steps: int) -> Iterator[tuple[list[int], float, object]]:
        """Per step: (raw path, FLOPs of this step, state)."""

    def refine(self, g: CityGraph, src: int, dst: int, steps: int = 1, *, seed: int = 0) -> Iterator[list[int]]:
        """Yield `steps` paths: at step k, the verifier's best of the raw paths of steps 1..k. Deterministic
        (`seed` unused)."""
        src, dst, steps = self.check_query(g, src, dst, steps)
        return self.best_so_far(g, src, dst, (p for p, _, _ in self._run(g, src, dst, steps)))

    def refine_with_compute(self, g: CityGraph, src: int, dst: int, steps: int = 1, *, seed: int = 0
                            ) -> Iterator[tuple[list[int], float]]:
        src, dst, steps = self.check_query(g, src, dst, steps)
        return self.best_so_far_with_compute(g, src, dst, ((p, f) for p, f, _ in self._run(g, src, dst, steps)))


class BestOfNModel(CountedModel):
    """A family whose test-time compute is best-of-N with the exact verifier: step 1 is greedy decoding, step k
    the verifier's best of greedy and k - 1 samples at `config.temperature`. Samples are decoded SAMPLE_CHUNK at
    a time, chunk c from its own random stream (`sample_generator(seed, c)`), so sample i is the same whatever
    the number of steps asked for. A subclass writes `_decode` (and `query_setup_ops` where a query costs
    something before its first decode)."""

    @abstractmethod
    def _decode(self, g: CityGraph, src: int, dst: int, n: int, *, greedy: bool, generator, ops: np.ndarray
                ) -> list[list[int]]:
        """`n` paths from src to dst decoded as one batch (greedy, or sampled from `generator`), each row's
        operations added to `ops` ((n,) floats; `citypath.cost`)."""

    def query_setup_ops(self, g: CityGraph, src: int, dst: int) -> float:
        """Operations a query spends before its first decode (step 1 carries them)."""
        return 0.0

    def _decode_many(self, g: CityGraph, queries: Sequence[tuple[int, int]], n: int, generators: list,
                     ops: list[np.ndarray]) -> list[list[list[int]]]:
        """`n` samples of each query decoded as one batch (query i's from generators[i], its operations added to
        ops[i]). Only a family with `batches_queries` writes it."""
        raise NotImplementedError(f"{type(self).__name__} decodes one query at a time")

    def _decode_greedy_many(self, g: CityGraph, queries: Sequence[tuple[int, int]], ops: np.ndarray
                            ) -> list[list[int]]:
        """Each query's greedy path (its operations added to ops[i], as if decoded alone). The default decodes them
        one at a time; a family with `batches_queries` may decode them as one batch."""
        return [self._decode(g, s, t, 1, greedy=True, generator=None, ops=ops[i:i + 1])[0]
                for i, (s, t) in enumerate(queries)]

    def refine_many(self, g: CityGraph, queries: Sequence[tuple[int, int]], steps: int = 1, *, seed: int = 0
                    ) -> list[list[tuple[list[int], float]]]:
        """With `batches_queries`: the queries' greedy steps decoded as one batch (`_decode_greedy_many`), then every
        chunk of samples of all the queries as one batch (`_decode_many`); each query's best-so-far as `refine`."""
        if not self.batches_queries or len(queries) < 2:
            return super().refine_many(g, queries, steps, seed=seed)
        import torch

        checked = [self.check_query(g, s, t, steps) for s, t in queries]
        steps = checked[0][2]
        live = [i for i, (s, t, _) in enumerate(checked) if s != t]
        runs: dict[int, list[tuple[list[int], float]]] = {}
        with torch.inference_mode():
            ops = np.array([self.query_setup_ops(g, *checked[i][:2]) for i in live])
            greedy = self._decode_greedy_many(g, [checked[i][:2] for i in live], ops)
            for j, i in enumerate(live):
                runs[i] = [(greedy[j], float(ops[j]))]
            done, chunk = 1, 0
            while done < steps and live:
                take = min(SAMPLE_CHUNK, steps - done)
                ops_each = [np.zeros(take) for _ in live]
                paths = self._decode_many(g, [checked[i][:2] for i in live], take,
                                          [sample_generator(seed, chunk) for _ in live], ops_each)
                for j, i in enumerate(live):
                    runs[i].extend(zip(paths[j], ops_each[j].tolist()))
                done += take
                chunk += 1
        return [list(self.best_so_far_with_compute(g, s, t, iter(runs[i]))) if i in runs else [([s], 0.0)] * k
                for i, (s, t, k) in enumerate(checked)]

    def refine(self, g: CityGraph, src: int, dst: int, steps: int = 1, *, seed: int = 0) -> Iterator[list[int]]:
        """Yield `steps` paths: greedy, then the verifier's best of greedy + k-1 samples at step k."""
        return (p for p, _ in self.refine_with_compute(g, src, dst, steps, seed=seed))

    def refine_with_compute(self, g: CityGraph, src: int, dst: int, steps: int = 1, *, seed: int = 0
                            ) -> Iterator[tuple[list[int], float]]:
        """`refine`'s paths, each with its step's operations: the decode of that step's candidate (greedy, or one
        sample with its share of its chunk's batch; step 1 also the query's set-up) and the verifier's scoring
        of it."""
        src, dst, steps = self.check_query(g, src, dst, steps)
        if src == dst:
            return iter([([src], 0.0) for _ in range(steps)])
        return self.best_so_far_with_compute(g, src, dst, self._candidates(g, src, dst, steps, seed))

    def _candidates(self, g: CityGraph, src: int, dst: int, steps: int, seed: int
                    ) -> Iterator[tuple[list[int], float]]:
        """Greedy, then the samples chunk by chunk; each with the operations its decode spent on it."""
        import torch

        ops = np.array([self.query_setup_ops(g, src, dst)])
        with torch.inference_mode():
            path = self._decode(g, src, dst, 1, greedy=True, generator=None, ops=ops)[0]
        yield path, float(ops[0])
        done, chunk = 1, 0
        while done < steps:
            take = min(SAMPLE_CHUNK, steps - done)
            ops = np.zeros(take)
            with torch.inference_mode():
                paths = self._decode(g, src, dst, take, greedy=False, generator=sample_generator(seed, chunk), ops=ops)
            yield from zip(paths, ops.tolist())
            done += take
            chunk += 1


def untrained_card(g: CityGraph, name: str, family: str, net, config) -> dict:
    """The card of an untrained model of `family` on `g` (its config's `max_steps`, else UNTRAINED_MAX_STEPS)."""
    from dataclasses import asdict

    return {"name": name, "family": family, "num_parameters": count_parameters(net),
            "max_steps": getattr(config, "max_steps", UNTRAINED_MAX_STEPS), "config": asdict(config),
            "graph": {"fingerprint": g.fingerprint, "config": asdict(g.config)}}


def write_card(path: Path, card: dict) -> None:
    write_atomic(path, json.dumps(card, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file: the card's `weights_sha256`, checked before weights are used."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def count_parameters(net) -> int:
    """Trainable numbers in a torch module (what a card's `num_parameters` says)."""
    return sum(p.numel() for p in net.parameters())
