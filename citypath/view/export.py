"""Path comparisons as files: a publication-quality PNG, an animated GIF of the steps, GeoJSON and CSV.

Everything is drawn offline with matplotlib's object API (a bare `Figure`, no pyplot state, so the
app's download threads can render at once) over the same simplified state outlines as
the app's map, in an equirectangular projection with the aspect corrected for latitude.
The app's download buttons and `python -m citypath route --png/--gif` both call these.

    >>> png = render_png(g, src, dst, [Shown("gru-small", paths, step=8)])  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

import numpy as np
from matplotlib import patheffects
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from citypath.graph import CityGraph
from citypath.metrics import METRICS, NOT_ARRIVED_NOTE, NOT_ARRIVED_SHORT, as_ids, evaluate_paths
from citypath.palette import style_of
from citypath.replay import Shown
from citypath.view.basemap import rings_in_box
from citypath.view.maplayers import ILLEGAL_RGB, OPTIMAL_RGB, illegal_segments, model_rgb, rgb_hex

PNG_DPI = 200
GIF_DPI = 90


def _rgb(run: Shown, i: int) -> str:
    return rgb_hex(run.rgb or model_rgb(i))


def _linestyle(run: Shown, i: int):
    """The run's line pattern (its palette style: the map's, the legend's and the charts')."""
    return style_of(run.rgb or model_rgb(i)).linestyle()


def _box(g: CityGraph, ids: np.ndarray, pad: float = 0.12) -> tuple[float, float, float, float]:
    lon, lat = g.lon[ids], g.lat[ids]
    w, e, s, n = lon.min(), lon.max(), lat.min(), lat.max()
    span = max(e - w, (n - s) * 1.3, 0.3)
    cx, cy = (w + e) / 2, (s + n) / 2
    half_w = span * (0.5 + pad)
    half_h = max((n - s) * (0.5 + pad), half_w * 0.55 * math.cos(math.radians(cy)))
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def _known(g: CityGraph, path: Sequence) -> np.ndarray:
    ids = as_ids(path, g.n_cities)
    return ids[ids >= 0]


def _draw_base(ax, g: CityGraph, box: tuple[float, float, float, float]) -> None:
    west, south, east, north = box
    for ring in rings_in_box(west, south, east, north):
        ax.fill(ring.lonlat[:, 0], ring.lonlat[:, 1], facecolor="#f1eee6", edgecolor="#a0a0aa", linewidth=0.6,
                zorder=0)
    inside = (g.lon >= west) & (g.lon <= east) & (g.lat >= south) & (g.lat <= north)
    ax.scatter(g.lon[inside], g.lat[inside], s=0.6, c="#5a6478", alpha=0.25, linewidths=0, zorder=1,
               rasterized=True)
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    ax.set_aspect(1 / math.cos(math.radians((south + north) / 2)))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_facecolor("#dde7ef")


def _draw_paths(ax, g: CityGraph, src: int, dst: int, optimal: np.ndarray, runs: Sequence[Shown],
                step: int | None, ghost: bool) -> list:
    artists = []
    opt_hex = rgb_hex(OPTIMAL_RGB)
    artists += ax.plot(g.lon[optimal], g.lat[optimal], color=opt_hex, lw=5, alpha=0.55, solid_capstyle="round",
                       zorder=3, label=f"optimal (Dijkstra), {len(optimal) - 1} hops")
    for i, run in enumerate(runs):
        k = run.step if step is None else step
        colour = _rgb(run, i)
        if ghost and k > 1:
            prev = _known(g, run.path(k - 1))
            artists += ax.plot(g.lon[prev], g.lat[prev], color=colour, lw=1.2, alpha=0.3, zorder=4)
        ids = _known(g, run.path(k))
        artists += ax.plot(g.lon[ids], g.lat[ids], color=colour, lw=1.8, ls=_linestyle(run, i), marker="o", ms=2.4,
                           zorder=5, label=f"{run.name}, step {k}")
        segs = [[(g.lon[a], g.lat[a]), (g.lon[b], g.lat[b])] for a, b, _ in illegal_segments(g, run.path(k))]
        if segs:
            artists.append(ax.add_collection(LineCollection(segs, colors=rgb_hex(ILLEGAL_RGB), linewidths=1.8,
                                                            linestyles="--", zorder=6)))
    artists += ax.plot(g.lon[[src, dst]], g.lat[[src, dst]], "o", color="#111111", ms=7, mec="white", mew=1.5,
                       zorder=7)
    for city in {src, dst}:
        artists.append(ax.annotate(str(g.cities.iloc[city]["name"]), (g.lon[city], g.lat[city]), xytext=(0, 8),
                                   textcoords="offset points", ha="center", fontsize=8, weight="bold", zorder=8,
                                   path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")]))
    return artists


def _legend(ax, runs_present_illegal: bool) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if runs_present_illegal:
        handles.append(Line2D([], [], color=rgb_hex(ILLEGAL_RGB), lw=1.8, ls="--"))
        labels.append("illegal jump (> radius)")
    # Outside the map, to its right: it can cover neither a route nor a city's name.
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=7,
              frameon=True, framealpha=0.9)


# The PNG table's columns after the path's name (`citypath.metrics.METRICS`).
TABLE = ("valid", "illegal_jumps", "reaches_target", "hops", "length_km", "length_pct", "frechet_km")
TABLE_HEADER = ["path", *(METRICS[name].short for name in TABLE)]


def metrics_rows(g: CityGraph, src: int, dst: int, runs: Sequence[Shown]) -> list[list[str]]:
    """The table under the PNG: one row per model at its step (the replay's own metrics), the optimal first; a
    figure against the optimal route of a route that did not arrive reads NOT_ARRIVED_SHORT (`Metric.read`)."""
    optimal = g.shortest_path(src, dst)
    rows_in = [("optimal", evaluate_paths(g, [optimal], [src], [dst]).iloc[0])]
    rows_in += [(f"{r.name} @ {r.step}", r.replay.at(r.step)) for r in runs if r.replay.at(r.step) is not None]
    rows = []
    for name, m in rows_in:
        values = {**m, "length_pct": (m["length_ratio"] - 1) * 100}
        rows.append([name, *(METRICS[col].read(values, unit=False, short=True) for col in TABLE)])
    return rows


def _table_note(rows: list[list[str]]) -> str:
    """The table's footnote: what its "—" means, when a cell has one."""
    return NOT_ARRIVED_NOTE if any(cell == NOT_ARRIVED_SHORT for row in rows for cell in row[1:]) else ""


def _figure(g: CityGraph, src: int, dst: int, runs: Sequence[Shown], *, table: bool, width_in: float = 8.0):
    optimal = np.asarray(g.shortest_path(src, dst), dtype=np.int64)
    box = _box(g, np.unique(np.r_[optimal, [src, dst]]))
    west, south, east, north = box
    # Size the map panel to the box's true aspect so the saved figure has no empty bands.
    aspect = (north - south) / ((east - west) * math.cos(math.radians((south + north) / 2)))
    map_h = min(max(width_in * aspect, 3.0), 9.0)
    table_h = 0.24 * (len(runs) + 2) if table else 0.0
    fig = Figure(figsize=(width_in, map_h + table_h + 0.6))
    if table:
        gs = fig.add_gridspec(2, 1, height_ratios=[map_h, table_h], hspace=0.04)
        ax, tax = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
        tax.axis("off")
        rows = metrics_rows(g, src, dst, runs)
        t = tax.table(cellText=rows, colLabels=TABLE_HEADER, loc="center",
                      cellLoc="center", colWidths=[0.23] + [0.77 / 7] * 7)
        if note := _table_note(rows):
            tax.text(0.0, -0.02, note, transform=tax.transAxes, ha="left", va="top", fontsize=7, color="#555555")
        t.auto_set_font_size(False)
        t.set_fontsize(7.5)
        t.scale(1, 1.2)
        for (r, _), cell in t.get_celld().items():
            cell.set_edgecolor("#bbbbbb")
            if r == 0:
                cell.set_text_props(weight="bold")
                cell.set_facecolor("#eef0f3")
    else:
        ax = fig.add_subplot(1, 1, 1)
    _draw_base(ax, g, box)
    return fig, ax, optimal


def _title(g: CityGraph, src: int, dst: int, runs: Sequence[Shown], step: int | None) -> str:
    if step is None and len({r.step for r in runs}) > 1:     # models shown at different steps (equal compute)
        return f"{g.label(src)} → {g.label(dst)}\n" + ", ".join(f"{r.name} · step {r.step}" for r in runs)
    who = ", ".join(r.name for r in runs) or "no model"
    k = f"step {step}" if step is not None else ", ".join(f"step {r.step}" for r in runs[:1]) or ""
    return f"{g.label(src)} → {g.label(dst)}\n{who}" + (f" · {k}" if runs else "")


def render_png(g: CityGraph, src: int, dst: int, runs: Sequence[Shown], *, dpi: int = PNG_DPI,
               table: bool = True) -> bytes:
    """A PNG comparing the optimal path with each run's path at its step, with legend and metrics table."""
    fig, ax, optimal = _figure(g, src, dst, runs, table=table)
    _draw_paths(ax, g, src, dst, optimal, runs, None, ghost=False)
    _legend(ax, any(illegal_segments(g, r.path()) for r in runs))
    ax.set_title(_title(g, src, dst, runs, None), fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white", bbox_inches="tight", pad_inches=0.12)
    return buf.getvalue()


def _frame(fig, dpi: int, bbox=None) -> Image.Image:
    """The figure as it stands, as one RGB image (cut to `bbox`, in inches, if given: every frame alike)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white", bbox_inches=bbox)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def gif_bytes(frames: list[Image.Image], frame_ms: int, last_frame_ms: int) -> bytes:
    """Frames as one looping GIF, the last one held longer."""
    out = io.BytesIO()
    palette = [f.quantize(colors=128, method=Image.Quantize.MEDIANCUT) for f in frames]
    durations = [frame_ms] * (len(palette) - 1) + [last_frame_ms]
    palette[0].save(out, format="GIF", save_all=True, append_images=palette[1:], duration=durations, loop=0,
                    optimize=False)
    return out.getvalue()


def _gif_legend(fig, ax, g: CityGraph, optimal: np.ndarray, runs: Sequence[Shown], steps: int):
    """The GIF's legend, the same in every frame: under the map, inside the frame, in as many columns as fit the
    map's width (so no entry is cut and the frame is no wider than the map). The title says the step."""
    handles = [Line2D([], [], color=rgb_hex(OPTIMAL_RGB), lw=5, alpha=0.55, solid_capstyle="round")]
    labels = [f"optimal (Dijkstra), {len(optimal) - 1} hops"]
    for i, r in enumerate(runs):
        handles.append(Line2D([], [], color=_rgb(r, i), lw=1.8, ls=_linestyle(r, i), marker="o", ms=2.4))
        labels.append(r.name)
    if steps > 1 and runs:
        handles.append(Line2D([], [], color="#777777", lw=1.2, alpha=0.45))
        labels.append("previous step (faint, in its colour)")
    if any(illegal_segments(g, r.path(k)) for r in runs for k in range(1, len(r.paths) + 1)):
        handles.append(Line2D([], [], color=rgb_hex(ILLEGAL_RGB), lw=1.8, ls="--"))
        labels.append(f"illegal jump (> {g.radius_km:g} km)")
    handles.append(Line2D([], [], ls="", marker="o", color="#111111", ms=6, mec="white", mew=1.2))
    labels.append("source / target")
    renderer = fig.canvas.get_renderer()
    room = ax.get_window_extent(renderer)
    below = fig.transFigure.inverted().transform((room.x0, room.y0))[1] - 0.01
    for ncol in range(len(handles), 0, -1):
        legend = fig.legend(handles, labels, loc="upper center", ncol=ncol, fontsize=7.5, frameon=False,
                            bbox_to_anchor=(fig.transFigure.inverted().transform((room.x0 + room.width / 2, 0))[0],
                                            below), handlelength=2.6, columnspacing=1.4, borderaxespad=0.0)
        if legend.get_window_extent(renderer).width <= room.width or ncol == 1:
            return legend
        legend.remove()
    return None


def render_gif(g: CityGraph, src: int, dst: int, runs: Sequence[Shown], *, dpi: int = GIF_DPI,
               frame_ms: int = 600, last_frame_ms: int = 2000) -> bytes:
    """An animated GIF: one frame per refinement step (all runs side by side on one map), the legend under the
    map inside every frame, and no margin beyond the map, its title and its legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    steps = max((len(r.paths) for r in runs), default=1)
    fig, ax, optimal = _figure(g, src, dst, runs, table=False, width_in=7.0)
    FigureCanvasAgg(fig)
    _gif_legend(fig, ax, g, optimal, runs, steps)

    def draw(k: int) -> list:
        artists = _draw_paths(ax, g, src, dst, optimal, runs, k, ghost=True)
        ax.set_title(f"{g.label(src)} → {g.label(dst)}\nstep {k} of {steps}", fontsize=10)
        return artists

    # Every frame is cut to one box: the map, its title and its legend as the last step draws them (the widest
    # title), with a small margin; the frames keep one size and nothing falls outside.
    last = draw(steps)
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.08)
    for a in last:
        a.remove()
    frames: list[Image.Image] = []
    for k in range(1, steps + 1):
        artists = draw(k)
        frames.append(_frame(fig, dpi, box))
        for a in artists:
            a.remove()
    return gif_bytes(frames, frame_ms, last_frame_ms)


def render_state_gif(g: CityGraph, src: int, dst: int, run: Shown, views: Sequence[Sequence], *,
                     dpi: int = GIF_DPI, frame_ms: int = 500, last_frame_ms: int = 2000) -> bytes:
    """An animated GIF of what a model thinks: per step, its first per-city state view as colour.

    `views[k - 1]` is the list of `StateView`s the model's `trace` yielded at step k; cities with
    no value (NaN: not reached yet) stay grey. The route decoded at that step is drawn on top.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig, ax, optimal = _figure(g, src, dst, [run], table=False, width_in=7.0)
    west, east = ax.get_xlim()
    south, north = ax.get_ylim()
    inside = np.flatnonzero((g.lon >= west) & (g.lon <= east) & (g.lat >= south) & (g.lat <= north))
    finite = [v[0].values[inside] for v in views if len(v)]
    top = max((float(np.nanmax(f)) for f in finite if np.isfinite(f).any()), default=1.0)
    norm, cmap = Normalize(0.0, max(top, 1e-9)), colormaps["viridis"]
    first = views[0][0] if views and len(views[0]) else None
    label = f"{first.name} ({first.unit})" if first is not None and first.unit else (first.name if first else "")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.6, label=label)
    frames: list[Image.Image] = []
    for k, step_views in enumerate(views, start=1):
        values = step_views[0].values[inside]
        known = np.isfinite(values)
        artists = [ax.scatter(g.lon[inside[known]], g.lat[inside[known]], s=3, c=cmap(norm(values[known])),
                              linewidths=0, zorder=2, rasterized=True)]
        artists += _draw_paths(ax, g, src, dst, optimal, [run], k, ghost=False)
        ax.set_title(f"{g.label(src)} → {g.label(dst)}\n{run.name} · step {k} · {int(known.sum()):,} cities "
                     "with a value", fontsize=10)
        frames.append(_frame(fig, dpi))
        for a in artists:
            a.remove()
    return gif_bytes(frames, frame_ms, last_frame_ms)


# -- data exports -------------------------------------------------------------------------

def _feature(g: CityGraph, path: Sequence, props: dict) -> dict:
    ids = _known(g, path)
    coords = [[round(float(g.lon[c]), 6), round(float(g.lat[c]), 6)] for c in ids]
    geometry = {"type": "LineString", "coordinates": coords} if len(coords) >= 2 else (
        {"type": "Point", "coordinates": coords[0]} if coords else None)
    return {"type": "Feature", "geometry": geometry,
            "properties": {**props, "city_ids": [c if isinstance(c, (int, float, str)) or c is None else str(c)
                                                 for c in path]}}


def to_geojson(g: CityGraph, src: int, dst: int, runs: Sequence[Shown], *, all_steps: bool = False) -> str:
    """A GeoJSON FeatureCollection: the optimal path and each run's path (at its step, or every step), with its
    metrics; length_ratio and frechet_km are null for a path that does not reach the target."""
    optimal = g.shortest_path(src, dst)
    features = [_feature(g, optimal, {"kind": "optimal", "source": g.label(src), "target": g.label(dst),
                                      "length_km": round(g.path_length_km(optimal), 3)})]
    for r in runs:
        steps = range(1, len(r.paths) + 1) if all_steps else [r.step]
        for k in steps:
            path, m = r.path(k), r.replay.at(k)
            if m is None:
                continue
            features.append(_feature(g, path, {
                "kind": "model", "model": r.name, "step": k, "valid": bool(m["valid"]),
                "illegal_jumps": int(m["illegal_jumps"]), "reaches_target": bool(m["reaches_target"]),
                "length_km": round(float(m["length_km"]), 3),
                # against the optimal route only for a route that arrives (`Metric.value`: NaN otherwise)
                **{name: (round(v, 6) if np.isfinite(v := METRICS[name].value(m)) else None)
                   for name in ("length_ratio", "frechet_km")}}))
    return json.dumps({"type": "FeatureCollection", "features": features}, indent=1)


def to_csv(g: CityGraph, src: int, dst: int, runs: Sequence[Shown], *, all_steps: bool = True) -> str:
    """One row per hop: kind, model, step, hop, city_id, label, lat, lon (unknown ids kept, coordinates blank)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["kind", "model", "step", "hop", "city_id", "label", "lat", "lon"])

    def rows(kind: str, model: str, step: int | str, path: Sequence) -> None:
        ids = as_ids(path, g.n_cities)
        for hop, (raw, c) in enumerate(zip(path, ids.tolist())):
            if c >= 0:
                w.writerow([kind, model, step, hop, c, g.label(c), f"{g.lat[c]:.6f}", f"{g.lon[c]:.6f}"])
            else:
                w.writerow([kind, model, step, hop, str(raw)[:40], "(unknown id)", "", ""])

    rows("optimal", "", "", g.shortest_path(src, dst))
    for r in runs:
        for k in (range(1, len(r.paths) + 1) if all_steps else [r.step]):
            rows("model", r.name, k, r.path(k))
    return out.getvalue()
