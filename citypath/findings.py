"""README's figures, generated from `results/` and never typed: the results table, the classical floor, each
scaffolded model's learned gain, and the headline sentences that quote them.

README.md holds generated blocks between `<!-- findings:NAME -->` and `<!-- /findings:NAME -->`; this module
renders each block from `results/eval.json` (the harness's one run on test pairs), and `tests/test_findings.py`
fails when README disagrees with the results:

    python -m citypath findings            # rewrite README.md's blocks from results/eval.json
    python -m citypath findings --check    # exit 1, naming the blocks, if README.md disagrees
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from citypath.evaluate import FAILED_RATIO_CAP, learned_gain, load_results

BLOCK = re.compile(r"(<!-- findings:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /findings:(?P=name) -->)", re.S)


def _last(entry: dict) -> str:
    return max(entry["by_steps"], key=int)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _ci_pct(ci: list | None) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}-{100 * ci[1]:.1f}]"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _ops(v: float | None) -> str:
    if v is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.1f}" if v < 100 else f"{v:,.0f}")


def _rows(results: dict) -> list[tuple[str, dict]]:
    """Learned models (by parameters), their controls right after them, then the classical rows."""
    models = results["models"]
    learned = sorted((n for n, e in models.items() if e.get("learned", True) and not e.get("control_of")),
                     key=lambda n: (models[n]["num_parameters"], n))
    out = []
    for n in learned:
        out.append((n, models[n]))
        out += [(c, e) for c, e in sorted(models.items()) if e.get("control_of") == n]
    seen = {n for n, _ in out}
    out += [(n, e) for n, e in sorted(models.items()) if n not in seen]
    return out


def results_table(results: dict) -> str:
    """One row per entry: valid (Wilson 95%) and the all-pairs length ratio at 1 step and at its last step, with
    the counted operations and measured single-thread CPU ms of a whole query at its last step."""
    pairs = results["pairs"]["n"]
    lines = [
        f"Test pairs: {pairs:,} (seed {results['pairs']['seed']}), never used for training, tuning or selection. "
        f"*ratio (all)*: mean length / optimal over all pairs, a route that does not arrive counted at "
        f"{FAILED_RATIO_CAP:g}; *ops*: operations of the whole query by the one convention of "
        "[`docs/evaluation.md`](docs/evaluation.md#one-cost); *CPU ms*: measured single-thread CPU time per query.",
        "",
        "| row | learned? | parameters | steps | valid, 1 step -> last | ratio (all), 1 -> last | ops / query | "
        "CPU ms / query |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in _rows(results):
        first, last = e["by_steps"]["1"], e["by_steps"][_last(e)]
        kind = ("control of " + e["control_of"]) if e.get("control_of") else ("yes" if e.get("learned", True)
                                                                              else "no learning")
        lines.append(
            f"| `{name}` | {kind} | {e['num_parameters']:,} | {_last(e)} | "
            f"{_pct(first['valid'])} -> {_pct(last['valid'])}{_ci_pct(last['ci95'].get('valid'))} | "
            f"{_ratio(first.get('length_ratio_all_mean'))} -> {_ratio(last.get('length_ratio_all_mean'))} | "
            f"{_ops(last.get('flops_total'))} | {_ms(last.get('cpu_ms_total_mean'))} |")
    return "\n".join(lines) + "\n"


def learned_gain_table(results: dict) -> str:
    """Each scaffolded model against its control on the same pairs: paired differences with 95% intervals."""
    lines = ["| model vs its scaffold control | steps | valid, difference [95%] | ratio (all), difference [95%] | "
             "ops, model / control | verdict | control within the model's ops: steps, valid, ratio (all) |",
             "|---|---:|---:|---:|---:|---|---|"]
    for name, e in _rows(results):
        if not e.get("control_of"):
            continue
        model = e["control_of"]
        if model not in results["models"]:
            continue
        gain = learned_gain(results, model, name)
        last = max(gain["by_steps"], key=int)
        shown = sorted({k for k in gain["by_steps"] if int(k) in (1, 4, 16)} | {last}, key=int)
        for k in shown:
            row = gain["by_steps"][k]
            v, r = row["valid"], row["length_ratio_all"]
            ops_m = results["models"][model]["by_steps"][k].get("flops_total")
            ops_c = results["models"][name]["by_steps"][k].get("flops_total")
            times = f"{ops_m / ops_c:.2g}x" if ops_m and ops_c else "-"
            lines.append(
                f"| `{model}` vs `{name}` | {k} | {100 * v['difference']:+.1f} pts [{100 * v['ci95'][0]:+.1f}, "
                f"{100 * v['ci95'][1]:+.1f}] | {r['difference']:+.4f} [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}] | "
                f"{times} | {row['verdict']} | {_within(results['models'][name], ops_m)} |")
        lines.append(f"| `{model}`, all steps | | | | | **{gain['verdict']}** | |")
    return "\n".join(lines) + "\n"


def _within(entry: dict, budget: float | None) -> str:
    """The entry's most steps whose operations fit in `budget`, with what it reaches there (equal compute)."""
    fits = [k for k, s in entry["by_steps"].items() if budget and s.get("flops_total") and s["flops_total"] <= budget]
    if not fits:
        return "none fits"
    k = max(fits, key=int)
    s = entry["by_steps"][k]
    return f"{k}: {_pct(s['valid'])}, {_ratio(s.get('length_ratio_all_mean'))}"


def classical_floor(results: dict) -> str:
    """Sentences: what the classical rows reach, and what each learned model costs against A* at its last step."""
    m = results["models"]
    out = []
    if "astar" in m:
        a = m["astar"]["by_steps"][_last(m["astar"])]
        out.append(f"- **A\\* (no learning)** is optimal on {a['optimal_length'] * a['n']:.0f} of {a['n']} test "
                   f"pairs, for {_ops(a['flops_total'])} operations and {_ms(a['cpu_ms_total_mean'])} ms of CPU a "
                   "query.")
        for name, e in _rows(results):
            if not e.get("learned", True) or e.get("control_of"):
                continue
            points = []
            for k in sorted({"1", _last(e)}, key=int):
                s = e["by_steps"][k]
                if not s.get("flops_total") or not s.get("cpu_ms_total_mean"):
                    continue
                points.append(f"at {k} step{'s' if k != '1' else ''} valid {_pct(s['valid'])}, ratio (all) "
                              f"{_ratio(s['length_ratio_all_mean'])}, optimal on {_pct(s['optimal_length'])}, "
                              f"{s['flops_total'] / a['flops_total']:.3g}x A\\*'s operations and "
                              f"{s['cpu_ms_total_mean'] / a['cpu_ms_total_mean']:.3g}x its CPU time")
            if points:
                out.append(f"  - `{name}`: " + "; ".join(points) + ".")
    return "\n".join(out) + "\n"


def _diff_pct(p: dict) -> str:
    lo, hi = p["ci95"]
    seen = "beyond" if p["significant"] else "within"
    return f"{100 * p['difference']:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}], {seen} the interval"


def _diff_nats(p: dict) -> str:
    lo, hi = p["ci95"]
    seen = "beyond" if p["significant"] else "within"
    return f"{p['difference']:+.3f} nats [{lo:+.3f}, {hi:+.3f}], {seen} the interval"


def depthlm_loops(report: dict) -> str:
    """The depth-recurrent LMs' loops curves, their paired checks and loops against samples at equal compute
    (`results/depthlm-loops.json`, made by `python -m experiments.depthlm_loops`)."""
    if not report.get("sizes"):
        return "No depth-recurrent LM has been measured yet (`python -m experiments.depthlm_loops`).\n"
    pairs = report["pairs"]
    out = [f"{pairs['n']} held-out test pairs (seed {pairs['seed']}), the same for every size.", ""]
    for e in report["sizes"].values():
        out += [f"**`{e['model']}`** ({e['parameters'][e['model']]:,} parameters; trained with a mean of "
                f"{e['loops_mean']:g} loops; `{e.get('command', report['command'])}`)", "",
                "| loops | NLL per city | passes three checks | valid | illegal hops | operations | CPU ms |",
                "|---:|---|---|---|---|---:|---:|"]
        for r in e["loops"]:
            nll = r["nll_per_city"]
            out.append(f"| {r['loops']} | {nll['value']:.3f} [{nll['ci95'][0]:.3f}-{nll['ci95'][1]:.3f}] | "
                       f"{_pct(r['passes_three_checks']['value'])}{_ci_pct(r['passes_three_checks']['ci95'])} | "
                       f"{_pct(r['valid']['value'])}{_ci_pct(r['valid']['ci95'])} | "
                       f"{_pct(r['illegal_hop_rate']['value'])} | {_ops(r['ops_mean'])} | {_ms(r['cpu_ms_mean'])} |")
        p = e["paired"]
        rmax, r1 = p["passes_rmax_minus_r1"]["loops"]
        r4, mean = p["passes_4x_mean_minus_mean"]["loops"]
        control = e["control"]
        out += ["",
                f"- More loops, {rmax} against {r1}: passes {_diff_pct(p['passes_rmax_minus_r1'])}; NLL "
                f"{_diff_nats(p['nll_rmax_minus_r1'])}.",
                f"- Overthinking, {r4} loops (about 4x the training mean) against {mean}: passes "
                f"{_diff_pct(p['passes_4x_mean_minus_mean'])}; NLL {_diff_nats(p['nll_4x_mean_minus_mean'])}.",
                (f"- Against its unlooped control `{control}` (same parameters, r = 1 in training and test, greedy): "
                 f"at {mean} loops passes {_diff_pct(p['passes_looped_mean_minus_control'])}, at {rmax} loops "
                 f"{_diff_pct(p['passes_looped_rmax_minus_control'])}; NLL at {mean} loops "
                 f"{_diff_nats(p['nll_looped_mean_minus_control'])} (control "
                 f"{e['control_nll_per_city']['value']:.3f})." if control else
                 "- **No unlooped control was trained for this size yet**: loops against r = 1 of a model trained "
                 "unlooped is not measured."),
                f"- `{e['post_rnn']}` ({e['parameters'][e['post_rnn']]:,} parameters): NLL per city "
                f"{e['post_rnn_nll_per_city']['value']:.3f} on the same optimal paths."]
        for name, rows in e["equal_compute"].items():
            top = next((x for x in rows if x["loops"] == rmax), None)
            if top is None:
                continue
            if top["n"] is None:
                out.append(f"- At equal operations with `{name}`: even its one greedy decode costs more than {rmax} "
                           "loops.")
            else:
                out.append(f"- At equal operations, {rmax} loops ({_ops(top['loops_ops'])}) pass "
                           f"{_pct(top['loops_passes'])}; `{name}`'s best of {top['n']} ({_ops(top['n_ops'])}) "
                           f"passes {_pct(top['n_passes'])}.")
        best = {name: rows[-1] for name, rows in e["best_of"].items()}
        out.append("- Samples instead of loops, at the largest N: " + "; ".join(
            f"`{name}` best of {r['n']} passes {_pct(r['passes_three_checks']['value'])}"
            f"{_ci_pct(r['passes_three_checks']['ci95'])} ({_ops(r['ops_mean'])})" for name, r in best.items()) + ".")
        out.append("")
    return "\n".join(out)


def _x(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{r['value']:.3f}x [{lo:.3f}-{hi:.3f}]"


def guided_frontier(report: dict) -> str:
    """The learned lower bounds against A*, ALT at equal bytes and their controls (`results/guided-frontier.json`,
    made by `python -m experiments.guided_frontier`)."""
    rows = report.get("rows", {})
    if not any(r["kind"] == "guided" for r in rows.values()):
        return "No guided checkpoint has been measured yet (`python -m experiments.guided_frontier`).\n"
    out = [f"{report['pairs']} {'held-out test' if report['split'] == 'test' else 'validation'} pairs "
           f"(seed {report['pair_seed']}), every row the same search run to its end, one thread; "
           f"`{report['command']}`.", "",
           "| row | bytes a city (read / stored) | parameters | expansions | x A* | CPU ms | x A* | exact |",
           "|---|---|---:|---:|---|---:|---|---|"]
    for name, r in rows.items():
        what = "" if r.get("certified", True) else " (uncertified)"
        out.append(f"| `{name}`{what} | {r['bytes_per_city']} / {r['stored_bytes_per_city']} | {r['parameters']:,} | "
                   f"{r['expansions']['value']:.1f} | {_x(r['vs_astar']['expansions'])} | {r['ms']['value']:.2f} | "
                   f"{_x(r['vs_astar']['ms'])} | {_pct(r['exact']['value'])}{_ci_pct(r['exact']['ci95'])} |")
    out.append("")
    for name, r in rows.items():
        if r["kind"] != "guided":
            continue
        e = r["vs_astar"]["expansions"]
        bar = "reaches" if e["ci95"][1] <= 0.73 else "does not reach"
        line = (f"- `{name}` ({r['bytes_per_city']} bytes a city read, {r['stored_bytes_per_city']} stored): "
                f"expansions {_x(e)} A*'s, which {bar} the bar of 0.73x")
        alt = r.get("vs_alt_equal_bytes")
        if alt:
            a = alt["expansions"]
            verdict = ("fewer than" if a["below_1"] else "more than" if a["above_1"] else
                       "no different from (the interval holds 1: no learned gain)")
            line += f"; against `{alt['row']}` at equal bytes {_x(a)}, {verdict} ALT"
        m = r["vs_astar"]["ms"]
        line += (f"; CPU ms {_x(m)} A*'s ({'at or below' if m['ci95'][1] <= 1.0 else 'not below'} A*'s); "
                 f"exact on {_pct(r['exact']['value'])}.")
        out.append(line)
    for name, r in rows.items():
        if r["kind"] == "control":
            e = r["vs_astar"]["expansions"]
            extra = f", weight {r['weight']:g}, exact on {_pct(r['exact']['value'])}" if "weight" in r else ""
            out.append(f"- Control `{name}` (of `{r['control_of']}`{extra}): expansions {_x(e)} A*'s.")
    return "\n".join(out) + "\n"


def _flops(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def tradeoff(report: dict) -> str:
    """The train/test-compute sweep (`results/tradeoff.json`, made by `python -m experiments.tradeoff evaluate`):
    per family the sizes, and per quality level each size's least test-time FLOPs and the fitted slope."""
    models, rep = report.get("models", {}), report.get("report")
    if not models or not rep:
        return "No sweep checkpoint has been evaluated yet (`python -m experiments.tradeoff evaluate`).\n"
    pairs = report["pairs"]
    out = [f"{pairs['n']:,} held-out test pairs (seed {pairs['seed']}); every size of a family saw the same number of "
           "training paths; test-time FLOPs per query (set-up included) at the first step count that reaches the "
           "level, with 95% bootstrap intervals over pairs; `python -m experiments.tradeoff evaluate`.", ""]
    for fam, f in rep["families"].items():
        runs = f["runs"]
        sizes = ", ".join(f"`{n}` {models[n]['num_parameters']:,} parameters, {models[n]['train_flops']:.3g} "
                          "training FLOPs" for n in runs)
        out += [f"**{fam}** ({sizes})", "",
                "| level | " + " | ".join(f"`{n}`" for n in runs) + " | slope (95%) |",
                "|---|" + "---|" * len(runs) + "---|"]
        for key in rep["levels"]:
            c = f["all"][key]
            cells = []
            for p in c["points"]:
                if p["test_flops"] is None:
                    cells.append(f"not within {p['max_step']} steps")
                else:
                    lo, hi = p["ci95"]
                    upper = _flops(hi) if hi else "open"
                    cells.append(f"{_flops(p['test_flops'])} (step {p['step']}; {_flops(lo)}-{upper})")
            fit = c.get("fit")
            if not fit:
                slope = "-"
            elif fit["ci95"][0] is None:
                slope = f"{fit['slope']:+.2f}"
            else:
                slope = f"{fit['slope']:+.2f} ({fit['ci95'][0]:+.2f} to {fit['ci95'][1]:+.2f})"
                if fit.get("resamples_defined", 1.0) < 0.95:
                    slope += f", over the {100 * fit['resamples_defined']:.0f}% of resamples every size reaches"
            out.append(f"| {c['label']} | " + " | ".join(cells) + f" | {slope} |")
        out.append("")
    for name, f in report.get("floor", {}).items():
        cheaper = sorted({f"`{p['name']}` at {c['label']}" for fam in rep["families"].values()
                          for c in fam["all"].values() for p in c["points"]
                          if p["test_flops"] is not None and p["test_flops"] < f["flops_total"]})
        out += [f"The classical floor on the same pairs: `{name}` (nothing learned) routes {_pct(f['valid'])} validly "
                f"with a mean ratio of {f['length_ratio_all_mean']:.4f} at {_flops(f['flops_total'])} FLOPs "
                f"({f['cpu_ms_total_mean']:.1f} CPU ms) a query; sweep points that reach a level for fewer FLOPs: "
                + (", ".join(cheaper) if cheaper else "none") + ".", ""]
    flops = sum(m["train_flops"] for m in models.values())
    minutes = sum(m.get("train_seconds") or 0 for m in models.values()) / 60
    out += [f"The whole sweep: {len(models)} trainings, {flops:.3g} training FLOPs, {minutes:.0f} min of training "
            "on the 2-core CPU (the cards' seconds, SPD build and card metrics apart).", ""]
    out += [f"- {line}" for line in report.get("headline", []) + report.get("difficulty", [])]
    return "\n".join(out) + "\n"


def benchmark_models(bench: dict) -> str:
    """One refinement step of every shipped checkpoint against one Dijkstra query (`results/benchmarks.json`'s
    models section, made by `python -m benchmarks.run`)."""
    sec = bench.get("models") or {}
    rows = sec.get("models") or {}
    if not rows:
        return "No benchmark run recorded yet (`nice -n 5 python -m benchmarks.run`).\n"
    out = [f"{sec['pairs']} held-out pairs (seed {sec['pair_seed']}; optimal paths of {sec['mean_optimal_hops']} "
           f"hops on average), {sec['torch_threads']} torch thread, run of {bench.get('date', '?')}; Dijkstra "
           f"{sec['dijkstra_ms_mean']:.1f} ms mean ({sec['dijkstra_ms_median']:.1f} median).", "",
           "| model | family | parameters | steps | first step | / Dijkstra | mean step | / Dijkstra "
           "| first call (one-off) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    order = sorted(rows.items(), key=lambda kv: (kv[1]["family"] != "classical", kv[1]["parameters"], kv[0]))
    for name, r in order:
        out.append(f"| `{name}` | {r['family']} | {r['parameters']:,} | {r['steps']} | "
                   f"{r['first_step_ms_mean']:.1f} ms | {r['first_step_vs_dijkstra']:.2f}x | "
                   f"{r['mean_step_ms']:.1f} ms | {r['mean_step_vs_dijkstra']:.2f}x | {r['first_call_ms']:.0f} ms |")
    return "\n".join(out) + "\n"


RENDERERS = {"results-table": results_table, "learned-gain": learned_gain_table, "classical-floor": classical_floor}
DEPTHLM_REPORT = Path("results/depthlm-loops.json")
GUIDED_REPORT = Path("results/guided-frontier.json")
TRADEOFF_REPORT = Path("results/tradeoff.json")
BENCHMARKS = Path("results/benchmarks.json")


def render(results: dict, depthlm: dict | None = None, guided: dict | None = None,
           sweep: dict | None = None, bench: dict | None = None) -> dict[str, str]:
    """Every block from the harness's results (and, given them, the depth-recurrent LMs' and the guided
    frontier's reports)."""
    blocks = {name: f(results) for name, f in RENDERERS.items()}
    if depthlm is not None:
        blocks["depthlm-loops"] = depthlm_loops(depthlm)
    if guided is not None:
        blocks["guided-frontier"] = guided_frontier(guided)
    if sweep is not None:
        blocks["tradeoff"] = tradeoff(sweep)
    if bench is not None:
        blocks["benchmark-models"] = benchmark_models(bench)
    return blocks


def load_depthlm(path: Path = DEPTHLM_REPORT) -> dict:
    import json

    return json.loads(Path(path).read_text()) if Path(path).is_file() else {"sizes": {}}


def load_guided(path: Path = GUIDED_REPORT) -> dict:
    import json

    return json.loads(Path(path).read_text()) if Path(path).is_file() else {"rows": {}}


def load_json(path: Path) -> dict:
    import json

    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}


def load_tradeoff(path: Path = TRADEOFF_REPORT) -> dict:
    import json

    return json.loads(Path(path).read_text()) if Path(path).is_file() else {"models": {}}


def rewrite(text: str, blocks: dict[str, str]) -> str:
    """`text` with every generated block's body replaced; a block README lacks is an error (not silently skipped)."""
    found = {m.group("name") for m in BLOCK.finditer(text)}
    missing = sorted(set(blocks) - found)
    if missing:
        raise ValueError(f"README has no block(s) {', '.join(missing)}: add <!-- findings:NAME --> ... "
                         "<!-- /findings:NAME --> where they belong")
    return BLOCK.sub(lambda m: m.group(1) + blocks.get(m.group("name"), m.group("body")) + m.group(4), text)


def disagreements(text: str, blocks: dict[str, str]) -> list[str]:
    """Names of the blocks whose body in `text` is not what the results give."""
    have = {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}
    return [n for n, body in blocks.items() if have.get(n) != body]


# Blocks only a doc holds (README links to it instead).
DOCS_ONLY = ("benchmark-models",)
# Docs that repeat some of README's generated blocks (each block they hold is rewritten and checked with it).
DOCS = (Path("docs/test-time-compute.md"), Path("docs/benchmarks.md"))


def main(args) -> int:
    """`python -m citypath findings [--check]`: README's blocks, and the same blocks where `DOCS` hold them."""
    readme = Path(args.readme)
    results_dir = Path(args.results).parent
    blocks = render(load_results(args.results), load_depthlm(results_dir / DEPTHLM_REPORT.name),
                    load_guided(results_dir / GUIDED_REPORT.name), load_tradeoff(results_dir / TRADEOFF_REPORT.name),
                    load_json(results_dir / BENCHMARKS.name))
    docs = [readme.parent / d for d in DOCS if (readme.parent / d).is_file()]
    files = [(readme, {k: v for k, v in blocks.items() if k not in DOCS_ONLY})]
    for doc in docs:
        held = {m.group("name") for m in BLOCK.finditer(doc.read_text())}
        files.append((doc, {k: v for k, v in blocks.items() if k in held}))
    if args.check:
        status = 0
        for path, wanted in files:
            bad = disagreements(path.read_text(), wanted)
            if bad:
                print(f"{path} disagrees with {args.results} in: {', '.join(bad)}; run python -m citypath findings",
                      file=sys.stderr)
                status = 1
            else:
                print(f"{path} agrees with {args.results}")
        return status
    for path, wanted in files:
        text = path.read_text()
        new = rewrite(text, wanted)
        if new != text:
            path.write_text(new)
        print(f"{'rewrote' if new != text else 'unchanged:'} {path} from {args.results}")
    return 0
