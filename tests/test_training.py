"""The shared training loop: resuming, curves, checkpoints, and DDP under torchrun (2 CPU processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from citypath.models.gru import GRUConfig
from citypath.tasks.gru import GRUTask
from citypath.training import TrainConfig, load_state, lr_at, parse_overrides, train

REPO = Path(__file__).resolve().parents[1]


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(name="gru-t", total_paths=1500, batch_paths=32, epoch_paths=500, val_paths=30, card_pairs=0,
                spd_paths=20000, progress=False, max_minutes=5, checkpoints_dir=str(tmp_path / "ck"),
                runs_dir=str(tmp_path / "runs"))
    base.update(kw)
    return TrainConfig(**base)


def _task(g, cfg):
    return GRUTask(g, "small", GRUConfig(n_cities=g.n_cities, embed_dim=8, hidden_dim=16), cfg, command="test")


def test_a_second_run_resumes_where_the_first_stopped(tiny_graph, tmp_path, capsys):
    cfg = _cfg(tmp_path)
    train(_task(tiny_graph, cfg), tiny_graph, cfg)
    card = json.loads((tmp_path / "ck" / "gru-t.json").read_text())
    first_steps = card["training"]["steps"]
    assert [p["epoch"] for p in card["curves"]] == [1, 2, 3]
    # A bigger budget continues from the saved state instead of starting over.
    cfg2 = _cfg(tmp_path, total_paths=2500)
    train(_task(tiny_graph, cfg2), tiny_graph, cfg2)
    assert "resuming gru-t at step" in capsys.readouterr().err
    card2 = json.loads((tmp_path / "ck" / "gru-t.json").read_text())
    assert card2["training"]["steps"] > first_steps
    assert card2["curves"][:3] == card["curves"]


def test_state_file_round_trips_model_and_optimizer(tiny_graph, tmp_path):
    import torch

    cfg = _cfg(tmp_path, total_paths=300)
    task = _task(tiny_graph, cfg)
    train(task, tiny_graph, cfg)
    model = task.build_model()
    opt = torch.optim.AdamW(model.parameters())
    meta = load_state(tmp_path / "runs" / "gru-t" / "state.safetensors", model, opt)
    assert meta["paths_seen"] >= 300 and opt.state_dict()["state"]


def test_a_moving_average_of_the_weights_is_shipped_and_resumes_bit_for_bit(tiny_graph, tmp_path):
    import torch
    from safetensors.torch import load_file

    # One run to the end against the same run interrupted (SIGINT at step 20) and resumed: the moving
    # average resumes with the rest.
    whole = _cfg(tmp_path / "a", total_paths=1200, ema_decay=0.9)
    train(_task(tiny_graph, whole), tiny_graph, whole)
    cut = _cfg(tmp_path / "b", total_paths=1200, ema_decay=0.9)
    task = _task(tiny_graph, cut)
    batch = task.batch

    def interrupted(step, rank, world):
        if step == 20:
            os.kill(os.getpid(), signal.SIGINT)
        return batch(step, rank, world)

    task.batch = interrupted
    with pytest.raises(SystemExit):
        train(task, tiny_graph, cut)
    train(_task(tiny_graph, cut), tiny_graph, cut)
    shipped_a = load_file(tmp_path / "a" / "ck" / "gru-t.safetensors")
    shipped_b = load_file(tmp_path / "b" / "ck" / "gru-t.safetensors")
    assert shipped_a.keys() == shipped_b.keys()
    assert all(torch.equal(shipped_a[k], shipped_b[k]) for k in shipped_a)
    # What ships is the average, not the last weights.
    task = _task(tiny_graph, whole)
    last = task.build_model()
    load_state(tmp_path / "a" / "runs" / "gru-t" / "state.safetensors", last,
               torch.optim.AdamW(last.parameters()), None)
    exported_last = task.export(last)
    assert any(not torch.equal(exported_last[k].to(shipped_a[k].dtype), shipped_a[k]) for k in shipped_a)
    # A state saved without the average cannot be resumed with one.
    plain = _cfg(tmp_path / "c", total_paths=300)
    train(_task(tiny_graph, plain), tiny_graph, plain)
    with pytest.raises(SystemExit, match="moving average"):
        again = _cfg(tmp_path / "c", total_paths=600, ema_decay=0.9)
        train(_task(tiny_graph, again), tiny_graph, again)


def test_a_changed_config_refuses_to_resume(tiny_graph, tmp_path):
    cfg = _cfg(tmp_path, total_paths=200)
    train(_task(tiny_graph, cfg), tiny_graph, cfg)
    other = GRUTask(tiny_graph, "small", GRUConfig(n_cities=tiny_graph.n_cities, embed_dim=8, hidden_dim=24), cfg)
    with pytest.raises(SystemExit, match="--fresh"):
        train(other, tiny_graph, cfg)


def test_schedule_and_overrides():
    cfg = TrainConfig(name="x", lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(0.1)
    assert lr_at(cfg, 100, 0.0) == pytest.approx(1.0)
    assert lr_at(cfg, 100, 1.0) == pytest.approx(0.1)
    assert parse_overrides(["hidden_dim=64", "output=vocab", "edge_features=false"]) == \
        {"hidden_dim": 64, "output": "vocab", "edge_features": False}


def test_full_vocabulary_output_trains_too(tiny_graph, tmp_path):
    cfg = _cfg(tmp_path, total_paths=300, card_pairs=10, steps_for_card=(1, 2))
    task = GRUTask(tiny_graph, "small", GRUConfig(n_cities=tiny_graph.n_cities, embed_dim=8, hidden_dim=16,
                                                  output="vocab", no_revisit=False), cfg)
    train(task, tiny_graph, cfg)
    card = json.loads((tmp_path / "ck" / "gru-t.json").read_text())
    assert set(card["metrics"]["by_steps"]) == {"1", "2"}


def test_torchrun_two_cpu_processes(tiny_graph, tmp_path):
    """The documented command scales out under torchrun unchanged (gloo backend on CPU)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "citypath", "train", "--model", "gru", "--size", "small", "--radius-km", "20", "--states", "RI,MA",
           "--paths", "1024", "--batch-paths", "32", "--epoch-paths", "512", "--name", "gru-ddp",
           "--set", "spd_paths=20000", "--set", "val_paths=30", "--set", "card_pairs=10",
           "--set", "embed_dim=8", "--set", "hidden_dim=16", "--checkpoints", str(tmp_path / "ck"),
           "--runs", str(tmp_path / "runs"), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    # Own session, so a hang kills the workers too instead of leaving them waiting on each other.
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, err[-3000:]
    card = json.loads((tmp_path / "ck" / "gru-ddp.json").read_text())
    # Both processes train: 2 x 32 paths per step.
    assert card["training"]["paths_seen"] == 64 * card["training"]["steps"] >= 1024
    assert len(card["curves"]) == 2 and card["metrics"]["pairs"] == 10
