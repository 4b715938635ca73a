"""Faults lose nothing: every file citypath writes is written atomically (temp + rename).

A full disk (OSError ENOSPC raised midway through a write) or an unwritable directory gives an
error that names the file and the cause; no half-written file and no temp file is left behind,
and a good file that was there before survives byte for byte. Covered: cache entries
(`CacheEntry.writer`, `write_atomic`), the SPD cache, the training state (`save_state`),
checkpoints (`write_checkpoint`: weights and card), results/eval.json (`merge_results`), the
CLI's --png/--gif/--geojson/--csv exports and the app's static layer files. A training run
killed with SIGKILL mid-epoch resumes from its last saved state and ends where an
uninterrupted run ends.

Tests may run as root, where chmod does not stop writes: the read-only-directory variants
skip there, and the ENOSPC/EACCES monkeypatch variants cover the same code paths.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from citypath import cli
from citypath.cache import CacheEntry, CacheError, write_atomic
from citypath.evaluate import load_results, merge_results
from citypath.models import load_model
from citypath.models.gru import GRUConfig
from citypath.tasks.gru import GRUTask
from citypath.training import STATE_FILE, TrainConfig, load_state, read_state_meta, save_state, train, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"
ROOT = os.geteuid() == 0
needs_non_root = pytest.mark.skipif(ROOT, reason="running as root: chmod does not stop writes "
                                                 "(the monkeypatched EACCES/ENOSPC variants cover this)")


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, NO_SPACE)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (hidden temp files included), by relative path."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_names(err: BaseException, path: Path, cause: str = NO_SPACE) -> None:
    assert str(path) in str(err), f"{err!s} does not name {path}"
    assert cause in str(err), f"{err!s} does not say {cause!r}"


class HalfThenFull:
    """A stand-in for os.fdopen whose files take half of what is written, then report a full disk."""

    def __init__(self, real):
        self.real = real

    def __call__(self, *args, **kwargs):
        f = self.real(*args, **kwargs)
        write = f.write

        def half(data):
            write(data[: len(data) // 2])
            f.flush()
            raise OSError(errno.ENOSPC, NO_SPACE)

        f.write = half
        return f


# -- write_atomic ---------------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["write", "fsync", "replace"])
def test_write_atomic_on_a_full_disk_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch, stage):
    target = tmp_path / "data.json"
    target.write_text("good")
    if stage == "write":
        monkeypatch.setattr(os, "fdopen", HalfThenFull(os.fdopen))
    else:
        monkeypatch.setattr(os, stage, enospc)
    with pytest.raises(OSError) as e:
        write_atomic(target, "new" * 10_000)
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC
    assert_names(e.value, target)
    assert snapshot(tmp_path) == {"data.json": b"good"}


def test_write_atomic_into_an_unwritable_directory_names_the_file(tmp_path, monkeypatch):
    import tempfile

    def denied(*_a, **_k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as e:
        write_atomic(tmp_path / "x.json", "{}")
    assert_names(e.value, tmp_path / "x.json", os.strerror(errno.EACCES))
    assert snapshot(tmp_path) == {}


@needs_non_root
def test_write_atomic_into_a_read_only_directory(tmp_path):
    (tmp_path / "x.json").write_text("good")
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as e:
            write_atomic(tmp_path / "x.json", "new")
    finally:
        tmp_path.chmod(0o755)
    assert_names(e.value, tmp_path / "x.json", os.strerror(errno.EACCES))
    assert snapshot(tmp_path) == {"x.json": b"good"}


# -- cache entries and the SPD cache -----------------------------------------------------------------

def _good_entry(root: Path) -> CacheEntry:
    entry = CacheEntry(root, "thing", "k1")
    with entry.writer({"version": "old"}) as d:
        np.save(d / "a.npy", np.arange(1000), allow_pickle=False)
    assert entry.load() == {"version": "old"}
    return entry


def _half_then_full_np_save(real):
    def save(file, arr, *args, **kwargs):
        real(file, arr, *args, **kwargs)
        p = Path(file if str(file).endswith(".npy") else f"{file}.npy")
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
        raise OSError(errno.ENOSPC, NO_SPACE)
    return save


def test_cache_entry_on_a_full_disk_midway_keeps_the_old_entry(tmp_path, monkeypatch):
    entry = _good_entry(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setattr(np, "save", _half_then_full_np_save(np.save))
    with pytest.raises(CacheError) as e:
        with entry.writer({"version": "new"}) as d:
            np.save(d / "a.npy", np.arange(5000), allow_pickle=False)
    assert_names(e.value, entry.dir)
    assert snapshot(tmp_path) == before
    assert entry.load() == {"version": "old"}


@pytest.mark.parametrize("failing_call", [1, 2])
def test_cache_entry_whose_rename_fails_keeps_the_old_entry(tmp_path, monkeypatch, failing_call):
    """Replacing an entry takes two renames (old aside, new in); whichever fails, the old entry stays."""
    entry = _good_entry(tmp_path)
    before = snapshot(tmp_path)
    real, calls = os.replace, []

    def replace(src, dst):
        if Path(dst).name == entry.dir.name or Path(src).name == entry.dir.name:
            calls.append((src, dst))
            if len(calls) == failing_call:
                raise OSError(errno.ENOSPC, NO_SPACE)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(CacheError) as e:
        with entry.writer({"version": "new"}) as d:
            np.save(d / "a.npy", np.arange(5000), allow_pickle=False)
    monkeypatch.undo()
    assert_names(e.value, entry.dir)
    assert snapshot(tmp_path) == before
    assert entry.load() == {"version": "old"}


@needs_non_root
def test_cache_entry_in_a_read_only_root(tmp_path):
    entry = _good_entry(tmp_path)
    before = snapshot(tmp_path)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(CacheError) as e:
            with entry.writer({"version": "new"}) as d:
                np.save(d / "a.npy", np.arange(10), allow_pickle=False)
    finally:
        tmp_path.chmod(0o755)
    assert_names(e.value, entry.dir, os.strerror(errno.EACCES))
    assert snapshot(tmp_path) == before


def test_spd_cache_on_a_full_disk_leaves_nothing_and_rebuilds_later(ri_graph, tmp_path, monkeypatch):
    from citypath.spd import SPDConfig, load_spd

    config = SPDConfig(n_paths=400, targets_per_source=20)
    monkeypatch.setattr(np, "save", _half_then_full_np_save(np.save))
    with pytest.raises(CacheError) as e:
        load_spd(ri_graph, "train", config, cache_dir=tmp_path, workers=1, progress=False)
    assert "spd-" in str(e.value) and str(tmp_path) in str(e.value) and NO_SPACE in str(e.value)
    assert snapshot(tmp_path) == {}
    monkeypatch.undo()
    ds = load_spd(ri_graph, "train", config, cache_dir=tmp_path, workers=1, progress=False)
    assert len(ds) + len(load_spd(ri_graph, "test", config, cache_dir=tmp_path, build=False)) == 400


# -- training state and checkpoints ---------------------------------------------------------------

def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(name="gru-f", total_paths=96, batch_paths=32, epoch_paths=10**6, val_paths=30, card_pairs=0,
                spd_paths=20000, progress=False, max_minutes=5, checkpoints_dir=str(tmp_path / "ck"),
                runs_dir=str(tmp_path / "runs"))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def gru_task(tiny_graph, tmp_path_factory):
    cfg = _cfg(tmp_path_factory.mktemp("task"))
    return GRUTask(tiny_graph, "small", GRUConfig(n_cities=tiny_graph.n_cities, embed_dim=8, hidden_dim=16), cfg,
                   command="test")


def _safetensors_half_then(exc):
    """A save_file that writes half a file where it was told to, then fails like a full disk."""
    from safetensors.torch import save_file as real

    def save_file(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise exc
    return save_file


def _full_disk_errors():
    from safetensors import SafetensorError

    return [OSError(errno.ENOSPC, NO_SPACE),
            # what safetensors itself raises on a full disk: not an OSError at all
            SafetensorError(f"Error while serializing: I/O error: {NO_SPACE} (os error {errno.ENOSPC})")]


@pytest.mark.parametrize("exc", _full_disk_errors(), ids=["oserror", "safetensor-error"])
def test_save_state_on_a_full_disk_keeps_the_last_state(gru_task, tmp_path, monkeypatch, exc):
    import safetensors.torch

    model = gru_task.build_model()
    opt = torch.optim.AdamW(model.parameters())
    path = tmp_path / "runs" / "r" / STATE_FILE
    save_state(path, model, opt, {"step": 7})
    before = snapshot(tmp_path)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    monkeypatch.setattr(safetensors.torch, "save_file", _safetensors_half_then(exc))
    with pytest.raises(OSError) as e:
        save_state(path, model, opt, {"step": 8})
    assert e.value.errno == errno.ENOSPC
    assert_names(e.value, path)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert read_state_meta(path)["step"] == 7


@needs_non_root
def test_save_state_into_a_read_only_run_dir(gru_task, tmp_path):
    model = gru_task.build_model()
    opt = torch.optim.AdamW(model.parameters())
    path = tmp_path / "r" / STATE_FILE
    save_state(path, model, opt, {"step": 7})
    path.parent.chmod(0o555)
    try:
        with pytest.raises(OSError) as e:
            save_state(path, model, opt, {"step": 8})
    finally:
        path.parent.chmod(0o755)
    assert_names(e.value, path, os.strerror(errno.EACCES))
    assert read_state_meta(path)["step"] == 7 and len(list(path.parent.iterdir())) == 1


def _write(task, g, cfg, seed: int):
    torch.manual_seed(seed)
    model = task.build_model()
    meta = {"seconds": 1.0, "paths_seen": 0, "tokens_seen": 0, "step": seed, "curves": []}
    return write_checkpoint(task, model, g, cfg, meta, 1, "paths")


@pytest.fixture
def good_checkpoint(gru_task, tiny_graph, tmp_path):
    cfg = _cfg(tmp_path, name="ck-good")
    weights = _write(gru_task, tiny_graph, cfg, seed=1)
    assert load_model("ck-good", directory=weights.parent, graph=tiny_graph).card["training"]["steps"] == 1
    return cfg, weights.parent


def _still_good(directory: Path, before: dict, g) -> None:
    assert snapshot(directory) == before                    # no temp file, no half file, old pair intact
    m = load_model("ck-good", directory=directory, graph=g)  # and the pair still matches (sha256 checked)
    assert m.card["training"]["steps"] == 1


@pytest.mark.parametrize("exc", _full_disk_errors(), ids=["oserror", "safetensor-error"])
def test_checkpoint_weights_on_a_full_disk_keep_the_old_checkpoint(good_checkpoint, gru_task, tiny_graph,
                                                                   monkeypatch, exc):
    import safetensors.torch

    cfg, d = good_checkpoint
    before = snapshot(d)
    monkeypatch.setattr(safetensors.torch, "save_file", _safetensors_half_then(exc))
    with pytest.raises(OSError) as e:
        _write(gru_task, tiny_graph, cfg, seed=2)
    monkeypatch.undo()
    assert_names(e.value, d / "ck-good.safetensors")
    _still_good(d, before, tiny_graph)


def test_checkpoint_card_on_a_full_disk_keeps_the_old_weights_too(good_checkpoint, gru_task, tiny_graph,
                                                                  monkeypatch):
    cfg, d = good_checkpoint
    before = snapshot(d)
    monkeypatch.setattr(os, "fdopen", HalfThenFull(os.fdopen))  # the card's write fails; the weights' did not
    with pytest.raises(OSError) as e:
        _write(gru_task, tiny_graph, cfg, seed=2)
    monkeypatch.undo()
    assert_names(e.value, d / "ck-good")
    _still_good(d, before, tiny_graph)


@pytest.mark.parametrize("suffix", [".safetensors", ".json"])
def test_checkpoint_whose_rename_fails_keeps_the_old_pair(good_checkpoint, gru_task, tiny_graph, monkeypatch,
                                                          suffix):
    """Weights and card are renamed into place one after the other; if either rename fails, the old pair stays."""
    cfg, d = good_checkpoint
    before = snapshot(d)
    real = os.replace

    def replace(src, dst):
        if str(dst) == str(d / f"ck-good{suffix}") and ".tmp" in str(src):
            raise OSError(errno.ENOSPC, NO_SPACE)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as e:
        _write(gru_task, tiny_graph, cfg, seed=2)
    monkeypatch.undo()
    assert_names(e.value, d / "ck-good")
    _still_good(d, before, tiny_graph)


def test_a_full_disk_during_training_names_the_state_file(gru_task, tiny_graph, tmp_path, monkeypatch):
    import safetensors.torch

    cfg = _cfg(tmp_path, name="gru-full")
    monkeypatch.setattr(safetensors.torch, "save_file", _safetensors_half_then(OSError(errno.ENOSPC, NO_SPACE)))
    # The handler in force before the call (SIG_IGN under `nohup ... &`, Python's default otherwise).
    before_sigint = signal.getsignal(signal.SIGINT)
    with pytest.raises(OSError) as e:
        train(gru_task, tiny_graph, cfg)
    assert_names(e.value, tmp_path / "runs" / "gru-full" / STATE_FILE)
    assert snapshot(tmp_path) == {}
    assert signal.getsignal(signal.SIGINT) is before_sigint  # Ctrl-C works as before, after the error


# -- a run killed mid-epoch -------------------------------------------------------------------------

KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import safetensors.torch
    from citypath import cli
    from citypath.tasks import gru
    mode, kill_at = os.environ["KILL_MODE"], int(os.environ["KILL_AT_STEP"])
    real_batch, real_save, saves = gru.GRUTask.batch, safetensors.torch.save_file, []
    def batch(self, step, rank, world):
        if mode == "step" and step == kill_at:  # mid-run and mid-epoch: no clean-up, no final save
            os.kill(os.getpid(), signal.SIGKILL)
        return real_batch(self, step, rank, world)
    def save_file(tensors, filename, metadata=None):
        saves.append(filename)
        real_save(tensors, filename, metadata=metadata)
        if mode == "save" and len(saves) == kill_at:  # half of the file is on disk when the kill comes
            Path(filename).write_bytes(Path(filename).read_bytes()[:1000])
            os.kill(os.getpid(), signal.SIGKILL)
    gru.GRUTask.batch, safetensors.torch.save_file = batch, save_file
    sys.exit(cli.main(sys.argv[1:]))
""")


def _train_argv(tmp_path: Path, save_every_s: float) -> list[str]:
    return ["train", "--model", "gru", "--size", "small", "--name", "gru-k", "--radius-km", "20",
            "--states", "RI,MA", "--paths", "3200", "--batch-paths", "32", "--epoch-paths", "1000000",
            # a huge wall-clock budget: progress (and so the learning rate) depends on paths only
            "--max-minutes", "1e9", "--set", "spd_paths=20000", "--set", "val_paths=30", "--set", "card_pairs=0",
            "--set", "embed_dim=8", "--set", "hidden_dim=16", "--set", f"save_every_s={save_every_s}",
            "--checkpoints", str(tmp_path / "ck"), "--runs", str(tmp_path / "runs"), "--no-progress"]


@pytest.mark.parametrize("mode, save_every_s", [("step", 0.0), ("step", 0.05), ("save", 0.0)],
                         ids=["killed-mid-step-saving-every-step", "killed-mid-step-saving-every-50ms",
                              "killed-mid-save"])
def test_a_run_killed_mid_epoch_resumes_from_its_last_state_and_ends_like_an_uninterrupted_one(
        tiny_graph, tmp_path, capsys, mode, save_every_s):
    kill_at = 40
    env = dict(os.environ, KILL_MODE=mode, KILL_AT_STEP=str(kill_at), OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, *_train_argv(killed, save_every_s)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = killed / "runs" / "gru-k" / STATE_FILE
    saved = read_state_meta(state)                # the last state is whole, not half-written
    assert saved["curves"] == []                  # and was saved mid-epoch, by the periodic save
    left = sorted(p.name for p in state.parent.iterdir())
    if mode == "save":                            # killed while writing state 40: state 39 is intact
        assert saved["step"] == kill_at - 1
        assert len(left) == 2 and left[0].startswith(f".{STATE_FILE}.tmp-")  # the half-written temp
    elif save_every_s == 0.0:                     # saving every step loses nothing but the step in flight
        assert saved["step"] == kill_at and left == [STATE_FILE]
    else:
        assert 0 < saved["step"] <= kill_at and left == [STATE_FILE]
    assert not (killed / "ck").exists()

    # Rerunning the same command resumes there, clears the half-written temp and finishes the budget ...
    assert cli.main(_train_argv(killed, save_every_s)) == 0
    assert f"resuming gru-k at step {saved['step']} " in capsys.readouterr().err
    assert sorted(p.name for p in state.parent.iterdir()) == [STATE_FILE]
    # ... with exactly the weights of a run that was never interrupted.
    clean = tmp_path / "clean"
    assert cli.main(_train_argv(clean, save_every_s)) == 0
    resumed_card = json.loads((killed / "ck" / "gru-k.json").read_text())
    clean_card = json.loads((clean / "ck" / "gru-k.json").read_text())
    assert resumed_card["training"]["steps"] == clean_card["training"]["steps"] == 100
    assert resumed_card["weights_sha256"] == clean_card["weights_sha256"]
    assert load_model("gru-k", directory=killed / "ck", graph=tiny_graph).num_parameters > 0


def test_state_round_trip_after_a_kill_loads_into_a_model(gru_task, tmp_path):
    """A state file is either the old one or the new one: here, one written then 'killed' before the next."""
    model = gru_task.build_model()
    opt = torch.optim.AdamW(model.parameters())
    path = tmp_path / STATE_FILE
    save_state(path, model, opt, {"step": 3})
    other = gru_task.build_model()
    meta = load_state(path, other, torch.optim.AdamW(other.parameters()))
    assert meta["step"] == 3
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


# -- results/eval.json ---------------------------------------------------------------------------

def _entry(name: str) -> dict:
    return {name: {"family": "x", "by_steps": {"1": {"valid": 1.0}}}}


def test_merge_results_on_a_full_disk_keeps_the_old_results(small_graph, tmp_path, monkeypatch):
    path = tmp_path / "results" / "eval.json"
    merge_results(path, small_graph, {"n": 5}, _entry("a"))
    before = path.read_bytes()
    monkeypatch.setattr(os, "fdopen", HalfThenFull(os.fdopen))
    with pytest.raises(OSError) as e:
        merge_results(path, small_graph, {"n": 5}, _entry("b"))
    monkeypatch.undo()
    assert_names(e.value, path)
    assert path.read_bytes() == before and set(load_results(path)["models"]) == {"a"}
    # Only the results and the merge lock (kept on purpose, so concurrent merges queue on it).
    assert sorted(p.name for p in path.parent.iterdir()) == [".eval.json.lock", "eval.json"]


@needs_non_root
def test_merge_results_into_a_read_only_directory(small_graph, tmp_path):
    path = tmp_path / "results" / "eval.json"
    merge_results(path, small_graph, {"n": 5}, _entry("a"))
    before = path.read_bytes()
    path.parent.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as e:
            merge_results(path, small_graph, {"n": 5}, _entry("b"))
    finally:
        path.parent.chmod(0o755)
    assert_names(e.value, path, os.strerror(errno.EACCES))
    assert path.read_bytes() == before


def test_evaluate_cli_on_a_full_disk_says_so(small_graph, tmp_path, monkeypatch, capsys):
    """The CLI reports a write failure as one line naming the file and the cause, not a traceback."""
    from citypath.models import FAMILIES
    from citypath.registry import Family
    from tests.fake_models import FAKE_FAMILIES
    from tests.fake_models import write_checkpoint as write_fake

    for family, target in FAKE_FAMILIES.items():
        monkeypatch.setitem(FAMILIES, family, Family(target))
    write_fake(tmp_path / "ck", "demo", "fake-refining", small_graph)
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--models", "demo", "--steps", "1,2", "--pairs", "4", "--bootstrap", "0", "--no-progress",
            "--checkpoints", str(tmp_path / "ck"), "--states", "RI,MA", "--out", str(out)]
    assert cli.main(argv) == 0
    before = out.read_bytes()
    monkeypatch.setattr(os, "fdopen", HalfThenFull(os.fdopen))
    code = cli.main(argv)
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code != 0 and str(out) in err and NO_SPACE in err and "Traceback" not in err
    assert out.read_bytes() == before


# -- CLI exports ------------------------------------------------------------------------------------

ROUTE = ["route", "Providence, RI", "Westerly, RI", "--states", "RI"]


@pytest.mark.parametrize("flag", ["--png", "--gif", "--geojson", "--csv"])
def test_cli_exports_on_a_full_disk_keep_the_old_file(tmp_path, monkeypatch, capsys, flag):
    out = tmp_path / f"out.{flag[2:]}"
    out.write_bytes(b"good")
    monkeypatch.setattr(os, "fdopen", HalfThenFull(os.fdopen))
    code = cli.main([*ROUTE, flag, str(out)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code != 0
    assert str(out) in err and NO_SPACE in err
    assert snapshot(tmp_path) == {out.name: b"good"}


def test_cli_exports_into_a_missing_directory_say_so(tmp_path, capsys):
    out = tmp_path / "no-such-dir" / "route.csv"
    code = cli.main([*ROUTE, "--csv", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and str(out) in err and os.strerror(errno.ENOENT) in err
    assert not out.parent.exists()


def test_cli_exports_are_whole_files(tmp_path, capsys):
    paths = {ext: tmp_path / f"r.{ext}" for ext in ("geojson", "csv")}
    assert cli.main([*ROUTE, "--geojson", str(paths["geojson"]), "--csv", str(paths["csv"])]) == 0
    assert json.loads(paths["geojson"].read_text())["type"] == "FeatureCollection"
    assert paths["csv"].read_text().startswith("kind,")
    assert sorted(snapshot(tmp_path)) == ["r.csv", "r.geojson"]


@needs_non_root
def test_cli_exports_into_a_read_only_directory(tmp_path, capsys):
    tmp_path.chmod(0o555)
    try:
        code = cli.main([*ROUTE, "--csv", str(tmp_path / "r.csv")])
    finally:
        tmp_path.chmod(0o755)
    err = capsys.readouterr().err
    assert code != 0 and str(tmp_path / "r.csv") in err and os.strerror(errno.EACCES) in err


# -- the app's static layer files ----------------------------------------------------------------------

def test_static_layer_files_on_a_full_disk_leave_no_temp(ri_graph, tmp_path, monkeypatch):
    from citypath.view.maplayers import write_static_json

    monkeypatch.setattr(os, "fdopen", HalfThenFull(os.fdopen))
    with pytest.raises(OSError) as e:
        write_static_json(ri_graph, tmp_path)
    monkeypatch.undo()
    assert NO_SPACE in str(e.value) and str(tmp_path) in str(e.value)
    assert snapshot(tmp_path) == {}
    paths = write_static_json(ri_graph, tmp_path)
    assert all(json.loads(p.read_text()) for p in paths.values())
