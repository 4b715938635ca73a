"""Tiny stand-in models for the app's tests: they implement the protocol, never ship as checkpoints.

- `RefiningFake`: step k is the optimal path with fewer and fewer cities swapped for random
  far-away ones, so the metrics improve with steps (like a model that refines), deterministic per seed.
- `GarbageFake`: yields nonsense (unknown ids, strings, floats, empty paths): must be drawn and scored.
- `CrashingFake`: yields one path, then raises.
- `SlowFake`, `CostlyFake`: the refining fake, 0.4 s a step, or 5 Mops a step.

`write_checkpoint(dir, name, family, g)` writes a card and an empty weights file that the
registry lists; `FAKE_FAMILIES` is what `CITYPATH_MODEL_FAMILIES` points at for a subprocess.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from citypath.models.base import RoutingModel

FAKE_FAMILIES = {
    "fake-refining": "tests.fake_models:RefiningFake",
    "fake-garbage": "tests.fake_models:GarbageFake",
    "fake-crashing": "tests.fake_models:CrashingFake",
    "fake-slow": "tests.fake_models:SlowFake",
    "fake-costly": "tests.fake_models:CostlyFake",
}


class _Fake(RoutingModel):
    @classmethod
    def from_checkpoint(cls, name, card, weights_path):
        return cls(name, card)


class RefiningFake(_Fake):
    family = "fake-refining"

    def flops_per_step(self, g, src, dst):
        return 1e6          # what a real family reports; the equal-compute mode reads it

    def refine(self, g, src, dst, steps=1, *, seed=0):
        src, dst, steps = self.check_query(g, src, dst, steps)
        optimal = g.shortest_path(src, dst)
        rng = np.random.default_rng(seed + 1000 * src + dst)
        noisy = list(optimal)
        swaps = min(max(len(optimal) - 2, 0), 4)
        for k in range(steps):
            path = list(optimal)
            left = max(swaps - k, 0)
            if left and len(path) > 2:
                for i in rng.choice(np.arange(1, len(path) - 1), size=min(left, len(path) - 2), replace=False):
                    path[int(i)] = int(rng.integers(0, g.n_cities))
            noisy = path
            yield noisy


class SlowFake(RefiningFake):
    """The refining fake, thinking 0.4 s a step: long enough to see the page paint before its route."""

    family = "fake-slow"

    def refine(self, g, src, dst, steps=1, *, seed=0):
        import time

        for path in super().refine(g, src, dst, steps, seed=seed):
            time.sleep(0.4)
            yield path


class CostlyFake(RefiningFake):
    """The refining fake at 5 Mops a step: at equal compute, under the smallest budget (1 Mops) not even its
    first step fits."""

    family = "fake-costly"

    def flops_per_step(self, g, src, dst):
        return 5e6


class GarbageFake(_Fake):
    family = "fake-garbage"

    def refine(self, g, src, dst, steps=1, *, seed=0):
        junk = [[], [src, -5, 10**9, "x", None, 3.5, dst], np.array([dst, src]), None, "not a path"]
        for k in range(steps):
            yield junk[k % len(junk)]


class CrashingFake(_Fake):
    family = "fake-crashing"

    def refine(self, g, src, dst, steps=1, *, seed=0):
        yield [src, dst]
        raise RuntimeError("simulated failure inside the model")


def write_checkpoint(directory: Path, name: str, family: str, g, *, max_steps: int = 8,
                     fingerprint: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    card = {"name": name, "family": family, "size": "test", "num_parameters": 1234, "max_steps": max_steps,
            "config": {}, "graph": {"fingerprint": fingerprint or g.fingerprint, "config": {}},
            "curves": [{"epoch": e, "step": 100 * e, "seconds": 10.0 * e, "paths_seen": 1000 * e,
                        "train_loss": 2.0 / e, "val_loss": 2.2 / e, "val_valid": 0.1 * e,
                        "val_reaches_target": 0.15 * e, "val_illegal_jump_rate": 0.5 / e,
                        "val_length_ratio": 1 + 0.5 / e} for e in range(1, 6)],
            "metrics": {"pairs": 10, "by_steps": {"1": {"valid": 0.1, "length_ratio_mean": 1.5},
                                                  "8": {"valid": 0.6, "length_ratio_mean": 1.1}}},
            "weights_sha256": hashlib.sha256(b"").hexdigest()}  # the empty weights file below
    (directory / f"{name}.json").write_text(json.dumps(card))
    (directory / f"{name}.safetensors").write_bytes(b"")
    return directory / f"{name}.json"


def use_fake_app(monkeypatch, ckpt: Path) -> Path:
    """Point an in-process app (AppTest) at `ckpt` on the RI+MA graph, with the stand-in families registered."""
    from citypath.models import FAMILIES
    from citypath.registry import Family

    monkeypatch.setenv("CITYPATH_STATES", "RI,MA")
    monkeypatch.setenv("CITYPATH_CHECKPOINTS", str(ckpt))
    # The models run in the page's thread (no worker processes: deterministic, one model per request); the
    # workers' own tests set CITYPATH_COMPUTE_WORKERS themselves (tests/test_compute.py).
    monkeypatch.setenv("CITYPATH_COMPUTE_WORKERS", "0")
    for family, target in FAKE_FAMILIES.items():
        monkeypatch.setitem(FAMILIES, family, Family(target))
    return ckpt


def bellman_exact_checkpoint(directory, g, name="bellman-exact", **config):
    """A bellman checkpoint holding Bellman-Ford's own weights (message = sender + edge length)."""
    import torch
    from safetensors.torch import save_file

    from citypath.models.base import sha256_file, write_card
    from citypath.models.bellman import BellmanConfig, BellmanModel

    m = BellmanModel.untrained(g, BellmanConfig(**{"rounds_per_step": 2, "max_steps": 8, **config}), name=name)
    sd = {k: torch.zeros_like(v) for k, v in m.net.state_dict().items()}
    for k in ("sender.weight", "edge.weight", "readout.weight"):
        sd[k][:] = 1.0
    directory.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(directory / f"{name}.safetensors"))
    write_card(directory / f"{name}.json", {**m.card, "weights_sha256": sha256_file(directory / f"{name}.safetensors")})
