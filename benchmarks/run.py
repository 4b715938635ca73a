"""Every speed figure of citypath, measured side by side in one run and read as ratios.

    nice -n 5 python -m benchmarks.run            # the whole suite on the default graph (~5 min on 2 cores)
    python -m benchmarks.run --quick              # the RI+MA graph and tiny counts (~1 min; what the test runs)

Each section runs the script that owns it in a fresh subprocess (benchmarks/measure.py samples
the memory of that process and its children), so no section warms another's caches:

1. data:     bench_data.py: SPD generation against a plain networkx Dijkstra loop on the same pairs;
2. training: bench_train.py, once per family (gru, refiner, gnn): paths/s of a short run of
             the project's own training loop, into a temporary directory;
3. models:   bench_models.py: one refinement step of each shipped model against one Dijkstra
             query on the same held-out pairs (first step and mean step);
4. app:      bench_app.py on app.py and on benchmarks/bare_page.py (one `st.write`): cold start
             in a fresh process and a rerun, the app against the bare page;
5. memory:   peak memory of a graph build from scratch (its own process), of the SPD generation
             (its process and workers) and of the app process (sections 1 and 4's processes);
6. load:     load_app.py: 20 concurrent visitors of `streamlit run app.py` (websocket clients),
             each opening its own route and playing it for 16 steps in the browser, every frame
             checked; time to open and to handle the stop report, against one report of a single
             visitor (section 4's report time).

In --quick mode the graph is RI+MA (CITYPATH_STATES=RI,MA); the shipped checkpoints belong to
the default graph, so the models and the app use the checkpoints section 2 has just trained.
Prints one JSON object (every figure under `summary`, flat; each section's details; the machine
and its load average, sampled every few seconds through the run) and writes it to `--out`
(default results/benchmarks.json; --quick writes nowhere unless given --out).
Figures are recorded in docs/benchmarks.md. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from benchmarks.measure import REPO, last_json, run_measured, script
from citypath.cache import write_atomic

FAMILIES = ("gru", "refiner", "gnn")
FULL = dict(spd_paths=2_000_000, nx_pairs=20, train_steps=40, pairs=30, steps=8, repeats=7, sessions=20, play=16)
QUICK = dict(spd_paths=3_000, nx_pairs=3, train_steps=3, pairs=3, steps=2, repeats=2, sessions=2, play=3)


def machine() -> dict:
    """What the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else \
        platform.processor()
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0) if Path("/proc/meminfo").exists() else 0
    versions = {}
    for pkg in ("torch", "numpy", "scipy", "networkx", "streamlit"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "memory_gib": round(mem_kb / 2**20, 1), "arch": platform.machine(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "gpu": "nvidia-smi present" if shutil.which("nvidia-smi") else "none", "packages": versions}


class LoadSampler:
    """The 1-minute load average, sampled every `interval` s on a thread."""

    def __init__(self, interval: float = 5.0):
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"min": round(min(s), 2), "mean": round(statistics.fmean(s), 2), "max": round(max(s), 2),
                "samples": len(s), "interval_s": self.interval}


def _run(name: str, args: list[str], env: dict, timeout: float) -> tuple[dict, dict]:
    """Run one benchmark script in a fresh process: (its JSON, its process figures)."""
    load_before = os.getloadavg()[0]
    r = run_measured(script(name) + args, env=env, timeout=timeout)
    proc = {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items() if k != "stdout"}
    proc["load_average_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return last_json(r["stdout"]), proc


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the RI+MA graph and tiny counts")
    ap.add_argument("--out", help="write the JSON here (default results/benchmarks.json; --quick: nowhere)")
    args = ap.parse_args(argv)
    n = QUICK if args.quick else FULL
    timeout = 600 if args.quick else 3600
    env = {k: v for k, v in os.environ.items() if k not in ("CITYPATH_STATES", "CITYPATH_CHECKPOINTS")}
    if args.quick:
        env["CITYPATH_STATES"] = "RI,MA"
    graph_args = ["--states", "RI,MA"] if args.quick else []
    t_start = time.perf_counter()
    result: dict = {"command": "python -m benchmarks.run" + (" --quick" if args.quick else ""),
                    "mode": "quick" if args.quick else "full",
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": machine(), "counts": n, "processes": {}}
    procs = result["processes"]

    with LoadSampler(2.0 if args.quick else 5.0) as load, \
            tempfile.TemporaryDirectory(prefix="citypath-bench-") as tmp:
        # 1. data: the SPD generator against networkx (graph build and cache load come with it)
        data, procs["data"] = _run("bench_data.py", [*graph_args, "--paths", str(n["spd_paths"]),
                                                     "--nx-pairs", str(n["nx_pairs"])], env, timeout)
        result["data"] = data
        # 5a. memory of a graph build from scratch, alone in its process
        graph_only, procs["graph_build"] = _run("bench_data.py", [*graph_args, "--graph-only"], env, timeout)
        result["graph_build"] = graph_only

        # 2. training throughput, one process per family
        ckpts = Path(tmp) / "checkpoints"
        result["training"] = {}
        for family in FAMILIES:
            train_args = ["--families", family, "--steps", str(n["train_steps"]), "--checkpoints", str(ckpts)]
            out, procs[f"train_{family}"] = _run("bench_train.py", train_args, env, timeout)
            result["training"][family] = {"graph": out["graph"], **out["families"][family]}

        # 3. one refinement step against one Dijkstra query
        model_args = ["--pairs", str(n["pairs"]), "--steps", str(n["steps"])]
        if args.quick:
            model_args += ["--checkpoints", str(ckpts)]
        result["models"], procs["models"] = _run("bench_models.py", model_args, env, timeout)

        # 4. the app against a bare page, each cold in a fresh process
        app_env = dict(env, CITYPATH_CHECKPOINTS=str(ckpts)) if args.quick else env
        app_args = ["--repeats", str(n["repeats"])] + (["--quick"] if args.quick else [])
        result["app"], procs["app"] = _run("bench_app.py", app_args, app_env, timeout)
        result["bare_page"], procs["bare_page"] = _run("bench_app.py", [*app_args, "--page", "benchmarks/bare_page.py"],
                                                       app_env, timeout)
        # 6. load: concurrent visitors of `streamlit run app.py`, each playing its own route
        load_args = ["--sessions", str(n["sessions"]), "--steps", str(n["play"]), "--exit-zero"]
        if args.quick:
            load_args += ["--states", "RI,MA", "--checkpoints", str(ckpts)]
        result["load"], procs["load"] = _run("load_app.py", load_args, env, timeout)
    result["load_average"] = load.summary()
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    result["summary"] = summarize(result)
    text = json.dumps(result, indent=1)
    print(text)
    out_path = args.out or (None if args.quick else str(REPO / "results" / "benchmarks.json"))
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(Path(out_path), text + "\n")
        print(f"wrote {out_path}", file=sys.stderr)
    return result


def summarize(r: dict) -> dict:
    """Every figure and ratio, flat: name -> number (seconds `_s`, milliseconds `_ms`, MB `_mb`)."""
    d, p, app, bare = r["data"], r["processes"], r["app"], r["bare_page"]
    s = {
        # 1. data
        "graph_build_from_scratch_s": d["graph_build_from_scratch_s"],
        "graph_load_from_cache_s": d["graph_load_from_cache_s"],
        "spd_seconds": d["spd_seconds"], "spd_paths_per_s": d["spd_paths_per_s"],
        "networkx_ms_per_path": d["networkx_seconds_per_path"] * 1e3,
        "spd_ms_per_path": d["spd_seconds_per_path"] * 1e3,
        "ratio_spd_speedup_vs_networkx": d["spd_speedup_vs_networkx"],
        # 3. models
        "dijkstra_ms": r["models"]["dijkstra_ms_mean"],
    }
    for name, m in r["models"]["models"].items():
        s[f"model_{name}_first_step_ms"] = m["first_step_ms_mean"]
        s[f"model_{name}_mean_step_ms"] = m["mean_step_ms"]
        s[f"ratio_model_{name}_first_step_vs_dijkstra"] = m["first_step_vs_dijkstra"]
        s[f"ratio_model_{name}_mean_step_vs_dijkstra"] = m["mean_step_vs_dijkstra"]
    # 2. training
    for family, t in r["training"].items():
        s[f"train_{family}_paths_per_s"] = t["paths_per_s"]
    # 4. app
    s.update({
        "app_cold_start_s": app["cold_start_s"], "bare_page_cold_start_s": bare["cold_start_s"],
        "ratio_app_cold_start_vs_bare_page": app["cold_start_s"] / bare["cold_start_s"],
        "app_rerun_ms": app["rerun_ms_median"], "bare_page_rerun_ms": bare["rerun_ms_median"],
        "ratio_app_rerun_vs_bare_page": app["rerun_ms_median"] / bare["rerun_ms_median"],
        "app_report_ms": app["report_ms_median"], "app_first_paint_s": app["first_paint_s"],
    })
    # 5. memory: the largest resident set of any process of the run (os.wait4's ru_maxrss, children
    # included); for the SPD also its parent and workers together, sampled while it generates
    # (RSS summed: pages the forked workers share with the parent counted in each; PSS: counted once).
    s.update({
        "mem_graph_build_max_rss_mb": p["graph_build"]["max_rss_mb"],
        "mem_spd_tree_rss_mb": d["spd_peak_tree_rss_mb"], "mem_spd_tree_pss_mb": d["spd_peak_tree_pss_mb"],
        "mem_data_process_max_rss_mb": p["data"]["max_rss_mb"],
        "mem_app_max_rss_mb": p["app"]["max_rss_mb"], "mem_bare_page_max_rss_mb": p["bare_page"]["max_rss_mb"],
        "ratio_mem_app_vs_bare_page": p["app"]["max_rss_mb"] / p["bare_page"]["max_rss_mb"],
    })
    # 6. load
    ld = r["load"]
    s.update({"load_sessions": ld["sessions"], "load_sessions_ok": ld["sessions_ok"],  # errors: r["load"]["errors"]
              "load_open_ms_p50": ld["open_ms_p50"], "load_open_ms_max": ld["open_ms_max"],
              "load_stop_ms_p50": ld["stop_ms_p50"], "load_messages_per_session": ld["messages_per_session"],
              "ratio_load_stop_p50_vs_single_report": ld["stop_ms_p50"] / app["report_ms_median"]})
    for family in r["training"]:
        s[f"mem_train_{family}_max_rss_mb"] = p[f"train_{family}"]["max_rss_mb"]
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()}


if __name__ == "__main__":
    main()
