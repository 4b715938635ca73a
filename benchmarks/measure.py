"""Helpers shared by the benchmark scripts: peak memory of a process tree, a measured subprocess, JSON out.

- `TreeSampler(pid)`: samples, every `interval` s, the memory of `pid` and every descendant
  (psutil), keeping the peak of their sum: PSS (proportional set size: pages shared
  between a parent and its forked workers counted once) and RSS (shared pages counted in each).
- `run_measured(cmd)`: runs a command in a fresh subprocess under a TreeSampler and reaps it
  with `os.wait4`, whose `ru_maxrss` is the largest resident set of any single process of the
  tree (the child or a descendant it waited for); returns those with its wall time and stdout.
- `last_json(text)`: the last JSON object printed in `text` (the scripts print one, last).
- `models_bench_args(description, models, pairs)`: the model benches' command line (`--models`, `--pairs`,
  `--steps`); `validation_setup(pairs)`: one torch thread, the default graph and that many validation pairs
  (never a test pair), the same for every model bench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants alive now."""
    try:
        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.Error:
        return []


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in kB; (0, 0) when it has gone (PSS falls back to RSS where unreadable)."""
    try:
        proc = psutil.Process(pid)
        try:
            full = proc.memory_full_info()
            return int(getattr(full, "pss", full.rss)) // 1024, int(full.rss) // 1024
        except psutil.AccessDenied:
            rss = int(proc.memory_info().rss) // 1024
            return rss, rss
    except psutil.Error:
        return 0, 0


class TreeSampler:
    """Peak summed PSS and RSS (MB) of a process and its descendants, sampled on a thread."""

    def __init__(self, pid: int | None = None, interval: float = 0.05):
        self.pid, self.interval = pid or os.getpid(), interval
        self.peak_pss_mb = self.peak_rss_mb = 0.0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        pids = tree_pids(self.pid)
        mem = [_memory_kb(p) for p in pids]
        self.peak_pss_mb = max(self.peak_pss_mb, sum(m[0] for m in mem) / 1024)
        self.peak_rss_mb = max(self.peak_rss_mb, sum(m[1] for m in mem) / 1024)
        self.peak_processes = max(self.peak_processes, sum(1 for m in mem if m[1]))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(cmd: list[str], *, env: dict | None = None, timeout: float = 3600,
                 echo: bool = True) -> dict:
    """Run `cmd` (in the repository root) in a fresh process; its stdout, wall time and peak memory.

    stderr goes to ours (progress bars, warnings). Raises RuntimeError if the command fails.
    """
    with tempfile.TemporaryFile("w+") as out:
        if echo:
            print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=None, text=True)
        with TreeSampler(proc.pid) as sampler:
            deadline = t0 + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.05)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}; stdout ends:\n{stdout[-3000:]}")
    return {"stdout": stdout, "wall_s": wall, "max_rss_mb": usage.ru_maxrss / 1024,
            "peak_tree_pss_mb": sampler.peak_pss_mb, "peak_tree_rss_mb": sampler.peak_rss_mb,
            "peak_processes": sampler.peak_processes}


def last_json(text: str) -> dict:
    """The last top-level JSON object in `text` (an object that starts a line and runs to the end)."""
    decoder = json.JSONDecoder()
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            try:
                obj, end = decoder.raw_decode(text, offsets[i])
            except json.JSONDecodeError:
                continue
            if not text[end:].strip():
                return obj
    raise ValueError(f"no JSON object at the end of the output:\n{text[-2000:]}")


def script(name: str) -> list[str]:
    """The command that runs benchmarks/<name> with this interpreter, as a module from the repository root."""
    return [sys.executable, "-m", f"benchmarks.{Path(name).stem}"]


def models_bench_args(description: str, models: str, pairs: int):
    """An argument parser with the model benches' `--models` (comma-separated), `--pairs` and `--steps` (16)."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--models", default=models)
    p.add_argument("--pairs", type=int, default=pairs)
    p.add_argument("--steps", type=int, default=16)
    return p


def validation_setup(pairs: int, seed: int = 31):
    """One torch thread (as the app runs its models), the default graph and `pairs` validation pairs drawn with
    `seed`: (graph, sources, targets)."""
    import numpy as np
    import torch

    import citypath
    from citypath.split import sample_pairs

    torch.set_num_threads(1)
    g = citypath.load_graph()
    srcs, dsts = sample_pairs(g.n_cities, pairs, np.random.default_rng(seed), split="validation")
    return g, srcs, dsts
