"""The download buttons: what each file holds (rendered only when clicked) and its name."""

from __future__ import annotations

from citypath.app.url import ViewState
from citypath.cache import process_cache
from citypath.graph import CityGraph
from citypath.replay import Replay, Shown


def exporter(ext: str, g: CityGraph, view: ViewState, replays: dict[str, Replay], steps: dict[str, int],
             colours: dict[str, tuple[int, int, int]]):
    """A zero-argument callable that renders one download (png, gif, geojson, csv) when clicked.

    `steps`: the step each model is shown at (the PNG draws it; the others hold every step).
    matplotlib is imported only then: it is ~0.5 s of the app's cold start otherwise.
    """
    def render():
        from citypath.view import export

        runs = [Shown(r, max(steps.get(name, 1), 1), colours[name])
                for name, r in replays.items() if steps.get(name, 1) >= 1]
        if ext == "geojson":
            return export.to_geojson(g, view.source, view.target, runs, all_steps=True)
        fn = {"png": export.render_png, "gif": export.render_gif, "csv": export.to_csv}[ext]
        return fn(g, view.source, view.target, runs)

    return render


def _file_part(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-@" else "_" for ch in text).strip("_")


@process_cache(maxsize=8)   # shared, never modified: a pandas lookup per city per download button was ~1 ms
def file_city_names(_g: CityGraph, fingerprint: str) -> list[str]:
    """Every city as a file-name part, by id: "Boston_MA"."""
    states = _g.cities["state"].tolist() if "state" in _g.cities else [""] * _g.n_cities
    return [_file_part(f"{name}_{state}") for name, state in zip(_g.cities["name"].tolist(), states)]


def download_name(g: CityGraph, view: ViewState, steps: dict[str, int], ext: str) -> str:
    """What a download holds, in its name: the pair, the models (with their step in a PNG) and the steps.

    e.g. citypath-Boston_MA-Denver_CO-gru-small@8-bellman-tiny@8-step8.png, ...-all-steps.geojson."""
    city = file_city_names(g, g.fingerprint).__getitem__
    models = [f"{m}@{k}" if ext == "png" else m for m, k in steps.items() if k >= 1] or ["optimal"]
    shown = sorted({k for k in steps.values() if k >= 1})
    which = (f"step{shown[0]}" if len(shown) == 1 else "steps" + "-".join(map(str, shown))) if ext == "png" \
        else "all-steps"
    names = "-".join(_file_part(m) for m in models)
    return f"citypath-{city(view.source)}-{city(view.target)}-{names}-{which}.{ext}"
