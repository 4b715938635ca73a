"""The palette (citypath/palette.py): every model its own colour on every view, the same colour everywhere, and
the colour-blind reader's line patterns."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from citypath import palette

REPO = Path(__file__).resolve().parents[1]


# -- colour science, for the checks only: sRGB -> CIELAB, CIEDE2000, and colour-vision deficiency simulation ----

def _lab(rgb: np.ndarray) -> np.ndarray:
    c = np.asarray(rgb, float) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _de2000(l1: np.ndarray, l2: np.ndarray) -> np.ndarray:
    L1, a1, b1 = np.moveaxis(l1, -1, 0)
    L2, a2, b2 = np.moveaxis(l2, -1, 0)
    cb = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(cb ** 7 / (cb ** 7 + 25 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p, h2p = np.degrees(np.arctan2(b1, a1p)) % 360, np.degrees(np.arctan2(b2, a2p)) % 360
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0, dh)
    dH = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    lb, cbp = (L1 + L2) / 2, (c1p + c2p) / 2
    hb = np.where(np.abs(h1p - h2p) > 180, (h1p + h2p + 360) / 2, (h1p + h2p) / 2)
    hb = np.where(c1p * c2p == 0, h1p + h2p, hb)
    t = (1 - 0.17 * np.cos(np.radians(hb - 30)) + 0.24 * np.cos(np.radians(2 * hb))
         + 0.32 * np.cos(np.radians(3 * hb + 6)) - 0.20 * np.cos(np.radians(4 * hb - 63)))
    rt = -np.sin(np.radians(60 * np.exp(-((hb - 275) / 25) ** 2))) * 2 * np.sqrt(cbp ** 7 / (cbp ** 7 + 25 ** 7))
    sl = 1 + 0.015 * (lb - 50) ** 2 / np.sqrt(20 + (lb - 50) ** 2)
    sc, sh = 1 + 0.045 * cbp, 1 + 0.015 * cbp * t
    return np.sqrt(((L2 - L1) / sl) ** 2 + ((c2p - c1p) / sc) ** 2 + (dH / sh) ** 2 + rt * (c2p - c1p) / sc * dH / sh)


# Machado, Oliveira & Fernandes (2009), severity 1.0, on linear RGB
_CVD = {"protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                       [-0.003882, -0.048116, 1.051998]],
        "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                         [-0.011820, 0.042940, 0.968881]],
        "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                       [0.004733, 0.691367, 0.303900]]}


def _seen(rgb: np.ndarray, vision: str | None) -> np.ndarray:
    if vision is None:
        return np.asarray(rgb, float)
    c = np.asarray(rgb, float) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) @ np.array(_CVD[vision]).T
    lin = np.clip(lin, 0, 1)
    return 255 * np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


def _distances(a, b, vision=None) -> np.ndarray:
    la, lb = _lab(_seen(np.array(a), vision)), _lab(_seen(np.array(b), vision))
    return _de2000(la[:, None, :], lb[None, :, :])


RGBS = [s.rgb for s in palette.PALETTE]


def test_every_colour_is_its_own_and_none_means_something_else_on_the_map():
    n = len(RGBS)
    assert len(set(RGBS)) == n >= len(palette.ROWS) + 2
    normal = _distances(RGBS, RGBS) + np.eye(n) * 1e3
    assert normal.min() >= 7.5, normal.min()
    reserved = [palette.OPTIMAL_RGB, palette.ILLEGAL_RGB, palette.SOURCE_RGB, palette.STATE_FILL_RGBA[:3],
                palette.WATER_RGB, palette.CITY_RGBA[:3]]
    assert _distances(RGBS, reserved).min() >= 14
    for vision in ("protanopia", "deuteranopia"):          # the optimal green and the illegal red stay apart
        assert _distances(RGBS, [palette.OPTIMAL_RGB, palette.ILLEGAL_RGB], vision).min() >= 8, vision
    lightness = _lab(np.array(RGBS, float))[:, 0]
    assert lightness.max() <= 76 and lightness.min() >= 30    # a thin line on the land, never washed out


def test_colours_a_colour_blind_reader_could_confuse_never_share_a_line_pattern():
    n = len(RGBS)
    for vision in ("protanopia", "deuteranopia", "tritanopia"):
        d = _distances(RGBS, RGBS, vision) + np.eye(n) * 1e3
        close = [(i, j) for i in range(n) for j in range(i + 1, n) if d[i, j] < 8]
        same = [(palette.PALETTE[i], palette.PALETTE[j]) for i, j in close
                if palette.PALETTE[i].dash == palette.PALETTE[j].dash]
        assert not same, (vision, same)
    # the first ten learned models are apart under every simulation by colour alone
    for vision in ("protanopia", "deuteranopia", "tritanopia"):
        d = _distances(RGBS[:10], RGBS[:10], vision) + np.eye(10) * 1e3
        assert d.min() >= 7.5, vision


def _shipped_rows() -> set[str]:
    cards = {p.stem for p in (REPO / "checkpoints").glob("*.json")}
    rows = set(json.loads((REPO / "results" / "eval.json").read_text())["models"])
    return cards | rows


def test_every_shipped_model_and_row_has_its_own_style():
    missing = _shipped_rows() - set(palette.ROWS)
    assert not missing, f"add to citypath/palette.py ROWS: {sorted(missing)}"
    assert len(set(palette.ROWS)) == len(palette.ROWS)
    styles = palette.assign(sorted(_shipped_rows()))
    assert len(set(styles.values())) == len(styles)
    # the kinds are drawn as the Test-time compute page draws them: classical rows dashed, controls dotted
    from citypath.models.classical import ROWS as CLASSICAL

    assert {palette.FIXED[n].dash for n in CLASSICAL} == {"dashed"}
    assert {palette.FIXED[n].dash for n in palette.ROWS if n.endswith(".scaffold")} == {"dotted"}


def test_no_two_models_on_one_view_share_a_colour_and_each_keeps_its_own():
    rng = random.Random(7)
    shipped = sorted(_shipped_rows())
    others = [f"my-model-{i}" for i in range(6)] + ["demo-refining", "demo-garbage", "demo-slow", "demo-bellman"]
    for _ in range(500):
        view = rng.sample(shipped, rng.randint(1, len(shipped)))
        view += rng.sample(others, rng.randint(0, min(len(others), len(palette.PALETTE) - len(view))))
        rng.shuffle(view)
        styles = palette.assign(view)
        assert list(styles) == view
        hexes = [s.hex for s in styles.values()]
        assert len(set(hexes)) == len(hexes), view
        for name in view:
            if name in palette.FIXED:                      # a listed model keeps its colour on every view
                assert styles[name] == palette.FIXED[name]
    # a model not listed keeps its colour wherever that colour is free
    alone = palette.style("my-model-1")
    assert palette.assign(["bellman-tiny", "my-model-1", "gru-small"])["my-model-1"] == alone
    assert alone in palette.SPARE


def test_the_app_pages_and_exports_read_the_palette():
    """The map, the player, the exports and the pages colour models through citypath.palette only."""
    from citypath.view import maplayers

    assert maplayers.OPTIMAL_RGB == palette.OPTIMAL_RGB and maplayers.ILLEGAL_RGB == palette.ILLEGAL_RGB
    for path in [REPO / "app.py", *(REPO / "pages").glob("*.py"), *(REPO / "citypath").rglob("*.py")]:
        text = path.read_text()
        if path.name == "palette.py":
            continue
        assert "model_rgb(cat" not in text and 'color="model:N"' not in text, path
        assert 'alt.Color("model:N", legend=None)' not in text and 'alt.Color("model:N", title=None)' not in text, path


@pytest.mark.parametrize("dash", sorted(palette.DASHES))
def test_line_patterns_read_the_same_in_svg_and_matplotlib(dash):
    s = palette.Style("#123456", dash)
    assert s.rgb == (0x12, 0x34, 0x56)
    if dash == "solid":
        assert s.dasharray(2) == "" and s.linestyle() == "solid"
    else:
        a, b = palette.DASHES[dash]
        assert s.dasharray(2) == f"{a * 2:g} {b * 2:g}" and s.linestyle() == (0, (a, b))
    assert palette.style_of((1, 2, 3)).dash == "solid"                 # a colour not in the palette: solid
    assert palette.style_of(palette.FIXED["astar"].rgb) == palette.FIXED["astar"]
