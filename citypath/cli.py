"""The command line: `python -m citypath {cities,build,route} ...`; `--help` on each says more."""

from __future__ import annotations

import argparse
import json
import sys
import time

from citypath.graph import DEFAULT_MIN_POPULATION, DEFAULT_RADIUS_KM, CityNotFound, _normalise, load_graph


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
        key = _normalise(args.query)
        table = table[table["label"].map(_normalise).str.contains(key, regex=False)]
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
    g = _graph(args)
    src, dst = g.find_city(args.source), g.find_city(args.target)
    path = g.shortest_path(src, dst)
    print(f"{g.label(src)} -> {g.label(dst)}: {len(path) - 1} hops, {g.path_length_km(path):,.1f} km (optimal)")
    for hop, city in enumerate(path):
        row = g.cities.loc[city]
        print(f"{hop:4d}  {row['label']:<40} pop {row['population']:>9,}  ({row['lat']:.4f}, {row['lon']:.4f})")
    return 0


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
    _graph_args(p)
    p.set_defaults(func=cmd_route)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CityNotFound, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
