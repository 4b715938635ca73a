"""`python -m citypath route ... --model M --steps K --png/--gif/--geojson/--csv`."""

from __future__ import annotations

import json

from PIL import Image

from citypath.cli import main
from citypath.models import FAMILIES
from citypath.registry import Family
from tests.fake_models import FAKE_FAMILIES, bellman_exact_checkpoint, write_checkpoint


def test_route_with_model_writes_every_export(tmp_path, small_graph, monkeypatch, capsys):
    for family, target in FAKE_FAMILIES.items():
        monkeypatch.setitem(FAMILIES, family, Family(target))
    write_checkpoint(tmp_path / "ckpt", "demo", "fake-refining", small_graph)
    monkeypatch.setenv("CITYPATH_CHECKPOINTS", str(tmp_path / "ckpt"))
    out = {ext: tmp_path / f"route.{ext}" for ext in ("png", "gif", "geojson", "csv")}
    rc = main(["route", "Worcester, MA", "Providence, RI", "--states", "RI,MA", "--model", "demo", "--steps", "3",
               *[a for ext, p in out.items() for a in (f"--{ext}", str(p))]])
    assert rc == 0
    text = capsys.readouterr().out
    assert "demo (fake-refining" in text and text.count("\n   3 ") >= 1
    assert Image.open(out["png"]).format == "PNG"
    assert Image.open(out["gif"]).n_frames == 3
    assert json.loads(out["geojson"].read_text())["type"] == "FeatureCollection"
    assert out["csv"].read_text().startswith("kind,model,step,hop")


def test_route_with_missing_model_fails_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CITYPATH_CHECKPOINTS", str(tmp_path))
    assert main(["route", "Worcester, MA", "Providence, RI", "--states", "RI,MA", "--model", "nope"]) == 2
    assert "no checkpoint named 'nope'" in capsys.readouterr().err


def test_route_state_gif_shows_what_the_model_thinks_per_step(tmp_path, small_graph, monkeypatch, capsys):
    bellman_exact_checkpoint(tmp_path / "ckpt", small_graph)
    monkeypatch.setenv("CITYPATH_CHECKPOINTS", str(tmp_path / "ckpt"))
    gif = tmp_path / "state.gif"
    rc = main(["route", "Worcester, MA", "Providence, RI", "--states", "RI,MA", "--model", "bellman-exact",
               "--steps", "4", "--state-gif", str(gif)])
    assert rc == 0
    frames = Image.open(gif)
    assert frames.n_frames == 4
    # Later frames colour more cities (the estimate spreads from the target): the frames differ.
    frames.seek(0)
    a = frames.convert("RGB").tobytes()
    frames.seek(3)
    assert frames.convert("RGB").tobytes() != a


def test_route_state_gif_refuses_a_family_without_a_state_view(tmp_path, small_graph, monkeypatch, capsys):
    for family, target in FAKE_FAMILIES.items():
        monkeypatch.setitem(FAMILIES, family, Family(target))
    write_checkpoint(tmp_path / "ckpt", "demo", "fake-refining", small_graph)
    monkeypatch.setenv("CITYPATH_CHECKPOINTS", str(tmp_path / "ckpt"))
    rc = main(["route", "Worcester, MA", "Providence, RI", "--states", "RI,MA", "--model", "demo",
               "--state-gif", str(tmp_path / "s.gif")])
    assert rc == 2 and "has no per-city state view" in capsys.readouterr().err
    assert not (tmp_path / "s.gif").exists()
