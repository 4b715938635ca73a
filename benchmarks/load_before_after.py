"""The load benchmark at two commits, side by side: did a refactor slow the app under a crowd?

    python -m benchmarks.load_before_after ff5a0bf 082fc79 --runs 4 --out results/issue29-load-before-after.json
    python -m benchmarks.load_before_after --combine A.json B.json --out C.json    # pooled by run pair

Checks each commit out into a temporary git worktree and runs that commit's own `python -m benchmarks.load_app`
(20 sessions x 16 steps by default, its own default models and checkpoints), the two commits taking turns run
by run so a busy moment of the machine falls on both; each run gets a fresh, empty cache directory (the graph
built and every route computed anew, as on a fresh machine). Writes every run's figures and, per commit, the
mean and spread of the open time (p50 and max), the stop report's p50 and the server's CPU per visitor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("open_ms_p50", "open_ms_max", "stop_ms_p50", "server_cpu_ms_per_visitor")


def run_once(tree: Path, sessions: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="citypath-before-after-") as cache:
        env = {**os.environ, "CITYPATH_CACHE_DIR": cache, "PYTHONPATH": str(tree)}
        proc = subprocess.run([sys.executable, "-m", "benchmarks.load_app", "--sessions", str(sessions),
                               "--steps", str(steps)], cwd=tree, env=env, capture_output=True, text=True,
                              timeout=900)
    if proc.returncode:
        raise SystemExit(f"load_app at {tree} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def difference(after: list[float], before: list[float]) -> dict:
    """The after's mean minus the before's over their runs, with Welch's 95% interval, and whether that interval
    holds 0 (no difference the runs can tell from the machine's noise)."""
    from scipy import stats

    mean = statistics.mean(after) - statistics.mean(before)
    if len(after) < 2 or len(before) < 2:
        return {"mean": mean, "ci95": None, "within_noise": None}
    lo, hi = stats.ttest_ind(after, before, equal_var=False).confidence_interval(0.95)
    return {"mean": mean, "ci95": [float(lo), float(hi)], "within_noise": bool(lo <= 0 <= hi)}


def paired(reports: list[dict]) -> dict:
    """Several recorded comparisons of the same two commits pooled by run pair (run i of the before and run i of
    the after took turns, so each pair shared the machine's moment): per figure the mean after-minus-before
    difference with its 95% t interval, the before's mean and the ratio."""
    from scipy import stats

    before, after = reports[0]["before"], reports[0]["after"]
    if any((r["before"], r["after"]) != (before, after) for r in reports):
        raise SystemExit("--combine: the reports compare different commits")
    out = {"before": before, "after": after, "pairs": sum(len(r["runs"][before]) for r in reports), "figures": {}}
    for k in FIGURES:
        d = [a[k] - b[k] for r in reports for a, b in zip(r["runs"][after], r["runs"][before])]
        base = statistics.mean(b[k] for r in reports for b in r["runs"][before])
        lo, hi = stats.ttest_1samp(d, 0).confidence_interval(0.95)
        out["figures"][k] = {"difference": statistics.mean(d), "ci95": [float(lo), float(hi)], "before_mean": base,
                             "after_over_before": (base + statistics.mean(d)) / base,
                             "within_noise": bool(lo <= 0 <= hi)}
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--combine"]:
        c = argparse.ArgumentParser(prog="python -m benchmarks.load_before_after --combine")
        c.add_argument("reports", nargs="+", type=Path)
        c.add_argument("--out", type=Path)
        a = c.parse_args(argv[1:])
        out = {"command": "python -m benchmarks.load_before_after " + " ".join(argv),
               **paired([json.loads(r.read_text()) for r in a.reports])}
        text = json.dumps(out, indent=1)
        if a.out:
            a.out.write_text(text + "\n")
        print(text)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    runs: dict[str, list[dict]] = {args.before: [], args.after: []}
    with tempfile.TemporaryDirectory(prefix="citypath-trees-") as root:
        trees = {}
        for rev in runs:
            trees[rev] = Path(root) / rev
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(trees[rev]), rev], cwd=REPO, check=True)
        try:
            for i in range(args.runs):
                for rev in runs:
                    r = run_once(trees[rev], args.sessions, args.steps)
                    runs[rev].append({k: r.get(k) for k in (*FIGURES, "sessions_ok", "errors", "models",
                                                            "load_average")})
                    print(f"{rev} run {i + 1}: " + ", ".join(f"{k} {r.get(k)}" for k in FIGURES), file=sys.stderr)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False)
    summary = {rev: {k: {"mean": statistics.mean(x[k] for x in rs), "min": min(x[k] for x in rs),
                         "max": max(x[k] for x in rs)} for k in FIGURES} for rev, rs in runs.items()}
    ratio = {k: summary[args.after][k]["mean"] / summary[args.before][k]["mean"] for k in FIGURES}
    out = {"command": "python -m benchmarks.load_before_after " + " ".join(argv),
           "before": args.before, "after": args.after, "runs": runs, "summary": summary,
           "after_over_before": ratio,
           "after_minus_before": {k: difference([x[k] for x in runs[args.after]], [x[k] for x in runs[args.before]])
                                  for k in FIGURES}}
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
