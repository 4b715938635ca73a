"""The command line: `python -m citypath {cities,build,route,train,evaluate,dataset} ...`; `--help` says more."""

from __future__ import annotations

import argparse
import json
import sys
import time

from citypath.graph import DEFAULT_MIN_POPULATION, DEFAULT_RADIUS_KM, CityNotFound, load_graph, normalise_label


def _graph_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--radius-km", type=float, default=DEFAULT_RADIUS_KM,
                   help=f"connection radius in km (default {DEFAULT_RADIUS_KM:g})")
    p.add_argument("--min-population", type=int, default=DEFAULT_MIN_POPULATION,
                   help=f"smallest population kept (default {DEFAULT_MIN_POPULATION})")
    p.add_argument("--states", type=lambda s: [x.strip().upper() for x in s.split(",") if x.strip()],
                   default=None, help="comma-separated state codes, e.g. RI,MA (default: contiguous US)")


def _graph(args):
    return load_graph(args.radius_km, args.min_population, args.states, verbose=True)


def cmd_cities(args) -> int:
    g = _graph(args)
    table = g.cities
    if args.state:
        table = table[table["state"] == args.state.upper()]
    if args.query:
        key = normalise_label(args.query)
        table = table[table["label"].map(normalise_label).str.contains(key, regex=False)]
    if table.empty:
        print(f"no city matches {args.query!r}" + (f" in {args.state}" if args.state else ""), file=sys.stderr)
        return 1
    shown = table.head(args.limit)
    print(shown[["label", "population", "lat", "lon", "timezone"]].to_string())
    if len(table) > len(shown):
        print(f"... {len(table) - len(shown)} more (use --limit)")
    return 0


def cmd_build(args) -> int:
    t0 = time.perf_counter()
    g = _graph(args)
    print(json.dumps(g.summary(), indent=2))
    print(f"graph ready in {time.perf_counter() - t0:.1f} s")
    if args.spd:
        from citypath.spd import SPDConfig, load_spd

        t1 = time.perf_counter()
        config = SPDConfig(args.paths, args.targets_per_source, args.seed)
        train = load_spd(g, "train", config, workers=args.workers)
        test = load_spd(g, "test", config, build=False)
        print(f"SPD ready in {time.perf_counter() - t1:.1f} s: {train!r}, {test!r}")
    return 0


def cmd_route(args) -> int:
    if args.model:
        from citypath.models.base import check_steps

        check_steps(args.steps)  # refused before any work, like refine() would refuse it
    g = _graph(args)
    src, dst = g.find_city(args.source), g.find_city(args.target)
    path = g.shortest_path(src, dst)
    print(f"{g.label(src)} -> {g.label(dst)}: {len(path) - 1} hops, {g.path_length_km(path):,.1f} km (optimal)")
    for hop, city in enumerate(path):
        row = g.cities.loc[city]
        print(f"{hop:4d}  {row['label']:<40} pop {row['population']:>9,}  ({row['lat']:.4f}, {row['lon']:.4f})")
    if args.model or args.png or args.gif or args.geojson or args.csv or args.state_gif:
        return _route_models(args, g, src, dst)
    return 0


def _route_models(args, g, src: int, dst: int) -> int:
    """`route --model M --steps K`: each model's refinement, step by step, and the image/data exports."""
    from pathlib import Path

    from citypath import palette
    from citypath.cache import write_atomic
    from citypath.models import ModelError, load_model
    from citypath.replay import Shown, compute_replay
    from citypath.view import export

    runs = []
    colours = palette.colours(args.model or [])
    for name in args.model or []:
        try:
            model = load_model(name, graph=g)
        except ModelError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        r = compute_replay(model, g, src, dst, args.steps, args.seed)
        print(f"\n{name} ({model.family}, {model.num_parameters:,} parameters), seed {args.seed}:")
        print(route_table(r.metrics))
        if r.error:
            print(f"warning: {r.error}", file=sys.stderr)
        runs.append(Shown(r, args.steps, colours[name]))
    if args.state_gif and not args.model:
        print("error: --state-gif needs a --model", file=sys.stderr)
        return 2
    if args.state_gif:
        model = load_model(args.model[0], graph=g)
        if not model.has_state_view:
            from citypath.models import FAMILIES, family_class

            with_view = [f for f in FAMILIES if family_class(f).has_state_view]
            print(f"error: {model.name} ({model.family}) has no per-city state view; families with one: "
                  f"{', '.join(with_view)}", file=sys.stderr)
            return 2
    outputs = [(args.png, lambda: export.render_png(g, src, dst, runs)),
               (args.state_gif, lambda: export.render_state_gif(
                   g, src, dst, runs[0], list(model.trace(g, src, dst, args.steps)))),
               (args.gif, lambda: export.render_gif(g, src, dst, runs)),
               (args.geojson, lambda: export.to_geojson(g, src, dst, runs, all_steps=True)),
               (args.csv, lambda: export.to_csv(g, src, dst, runs))]
    for path, render in outputs:
        if path:
            data = render()
            # Atomic: a full disk or an unwritable directory leaves any previous file whole (OSError names it).
            write_atomic(Path(path), data if isinstance(data, bytes) else data.encode())
            print(f"wrote {path}")
    return 0


# The route table's columns after the step: the PNG's table and the step's time (`citypath.metrics.METRICS`).
ROUTE_TABLE = ("valid", "illegal_jumps", "reaches_target", "hops", "length_km", "length_pct", "frechet_km", "ms")


def route_table(metrics) -> str:
    """A replay's metrics per step as a fixed-width table: headers and values as the metric table writes them,
    with the arrival rule (`Metric.read`: a figure against the optimal route of a route that did not arrive is
    "—", and a line under the table says so)."""
    from citypath.metrics import METRICS, NOT_ARRIVED_NOTE, NOT_ARRIVED_SHORT
    from citypath.view.present import records

    rows = records(metrics)
    columns = [["step", *(str(int(row["step"])) for row in rows)]]
    columns += [[METRICS[name].short, *(METRICS[name].read(row, unit=False, short=True) for row in rows)]
                for name in ROUTE_TABLE]
    widths = [max(map(len, col)) for col in columns]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in zip(*columns)]
    if any(NOT_ARRIVED_SHORT in col[1:] for col in columns[1:]):
        lines.append(NOT_ARRIVED_NOTE)
    return "\n".join(lines)


def cmd_train(args) -> int:
    from citypath.training import main as train_main

    args.command_line = "python -m citypath " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else ""
    return train_main(args)


def cmd_findings(args) -> int:
    from citypath.findings import main as findings_main

    return findings_main(args)


def cmd_evaluate(args) -> int:
    from citypath.evaluate import main as evaluate_main

    return evaluate_main(args)


def cmd_dataset_export(args) -> int:
    from citypath import dataset
    from citypath.spd import SPDConfig

    t0 = time.perf_counter()
    g = _graph(args)
    meta = dataset.export(g, SPDConfig(args.paths, args.targets_per_source, args.seed), args.out, force=args.force,
                          progress=not args.no_progress, workers=args.workers)
    for name, info in meta["files"].items():
        print(f"{args.out}/{name}: {info['rows']:,} rows, {info['bytes']:,} bytes, sha256 {info['sha256']}")
    print(f"wrote {args.out}/{dataset.METADATA} in {time.perf_counter() - t0:.1f} s "
          f"(paths by split: {meta['spd']['by_split']})")
    return 0


def cmd_dataset_check(args) -> int:
    from citypath import dataset

    ex = dataset.load_export(args.dir)
    print(f"{args.dir}: a complete export, every file matches metadata.json; {ex.graph!r}, "
          f"{ex.metadata['spd']['paths']:,} paths {ex.metadata['spd']['by_split']}")
    return 0


def _dataset_parser(sub) -> None:
    from citypath import dataset
    from citypath.spd import SPDConfig

    spd = SPDConfig()
    p = sub.add_parser("dataset", help="export the City Dataset and the SPD as Parquet files (docs/datasheet.md)")
    verbs = p.add_subparsers(dest="verb", required=True)
    e = verbs.add_parser("export", help="write cities, edges and SPD paths as Parquet, with metadata.json")
    e.add_argument("--out", default=dataset.DEFAULT_OUT,
                   help=f"a new or empty directory (default {dataset.DEFAULT_OUT}, git-ignored)")
    e.add_argument("--force", action="store_true", help="replace a previous export in --out")
    _graph_args(e)
    e.add_argument("--paths", type=int, default=spd.n_paths, help=f"SPD pairs in all (default {spd.n_paths:,})")
    e.add_argument("--targets-per-source", type=int, default=spd.targets_per_source,
                   help=f"targets per Dijkstra source (default {spd.targets_per_source})")
    e.add_argument("--seed", type=int, default=spd.seed, help=f"SPD sampling seed (default {spd.seed})")
    e.add_argument("--workers", type=int, default=None, help="processes building the SPD if not cached")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_dataset_export)
    c = verbs.add_parser("check", help="check an export directory against its metadata.json and rebuild its graph")
    c.add_argument("dir", help="the export directory")
    c.set_defaults(func=cmd_dataset_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m citypath",
                                     description="Routing between US cities: the data, the models, the demo.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("cities", help="search or list the cities of a graph")
    p.add_argument("query", nargs="?", help="part of a city label, e.g. 'springfield'")
    p.add_argument("--state", help="only this state, e.g. IL")
    p.add_argument("--limit", type=int, default=20, help="rows to print (default 20)")
    _graph_args(p)
    p.set_defaults(func=cmd_cities)

    p = sub.add_parser("build", help="build (or check) the cached city graph and, with --spd, the SPD")
    _graph_args(p)
    p.add_argument("--spd", action="store_true", help="also generate the Shortest Path Dataset")
    p.add_argument("--paths", type=int, default=2_000_000, help="SPD pairs in all (default 2,000,000)")
    p.add_argument("--targets-per-source", type=int, default=256, help="targets per Dijkstra source (default 256)")
    p.add_argument("--seed", type=int, default=0, help="SPD sampling seed (default 0)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("route", help="the optimal path between two cities")
    p.add_argument("source", help="a city label or unique prefix, e.g. 'Boston, MA'")
    p.add_argument("target", help="a city label or unique prefix, e.g. 'Denver, CO'")
    p.add_argument("--model", action="append", metavar="M",
                   help="also run checkpoint M (repeatable, e.g. --model gru-small --model gru-large)")
    p.add_argument("--steps", type=int, default=8, help="refinement steps per model (default 8)")
    p.add_argument("--seed", type=int, default=0, help="model seed (default 0)")
    p.add_argument("--png", metavar="FILE", help="write a PNG comparing the paths at the last step")
    p.add_argument("--gif", metavar="FILE", help="write an animated GIF of the refinement steps")
    p.add_argument("--geojson", metavar="FILE", help="write the paths of every step as GeoJSON")
    p.add_argument("--csv", metavar="FILE", help="write the paths of every step as CSV, one row per hop")
    p.add_argument("--state-gif", metavar="FILE",
                   help="write an animated GIF of what the (first) model thinks per step, for families with a state "
                        "view (e.g. bellman: estimated km to target)")
    _graph_args(p)
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("train", help="train a model family (resumes an interrupted run); see citypath/training.py")
    p.add_argument("--model", required=True, help="model family, e.g. gru")
    p.add_argument("--size", help="the family's size preset, e.g. small or large")
    p.add_argument("--name", help="checkpoint name (default <family>-<size>)")
    p.add_argument("--seed", type=int, help="training seed (default 0)")
    p.add_argument("--max-minutes", type=float,
                   help="wall-clock safety cap: if it runs out, training stops early and saves, and the card says "
                        "its command no longer reproduces it (the schedule follows paths only)")
    p.add_argument("--paths", type=int, help="budget of training paths")
    p.add_argument("--batch-paths", type=int, help="paths per optimiser step per process")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--threads", type=int, help="torch threads per process (default 1; 0 shares the cores out)")
    p.add_argument("--epoch-paths", type=int, help="paths between validation points of the curves")
    p.add_argument("--checkpoints", help="directory for the checkpoint (default checkpoints/)")
    p.add_argument("--runs", help="directory for resumable training state (default runs/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training or model config field, e.g. --set hidden_dim=512 (repeatable)")
    p.add_argument("--keep-validation-pairs", action="store_true",
                   help="also train on validation pairs, as every run did before the validation split existed "
                        "(reproduces those runs; new runs leave them out)")
    p.add_argument("--fresh", action="store_true", help="ignore a saved training state and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _graph_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score models on held-out pairs at several step counts (JSON results)")
    p.add_argument("--models", required=True, help="comma-separated checkpoint names, e.g. gru-small,gru-large")
    p.add_argument("--steps", default="1,2,4,8,16,32", help="comma-separated step counts (default 1,2,4,8,16,32)")
    p.add_argument("--pairs", type=int, default=1000, help="held-out pairs (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing pairs and for the models (default 0)")
    p.add_argument("--split", choices=("heldout", "validation", "train"), default="heldout",
                   help="draw held-out (test) pairs (the harness, default), validation pairs (for choosing "
                        "between checkpoints or settings without looking at test pairs), or pairs that are "
                        "not held out (training or validation, as before the validation split)")
    p.add_argument("--out", help="results file; other models' entries are kept (default results/eval.json; "
                                 "results/eval-validation.json, results/eval-train.json with --split)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% intervals")
    p.add_argument("--checkpoints", help="directory of checkpoints (default checkpoints/)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _graph_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("findings", help="rewrite README's generated figures from results/ (or --check them)")
    p.add_argument("--results", default="results/eval.json", help="the harness's results (default results/eval.json)")
    p.add_argument("--readme", default="README.md", help="the file holding <!-- findings:NAME --> blocks")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if the file disagrees with results")
    p.set_defaults(func=cmd_findings)

    _dataset_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CityNotFound, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, an unwritable or missing directory: the message names the file
        print(f"error: {e}", file=sys.stderr)
        return 1
