"""Shared fixtures: small regional graphs keep the suite fast; the default graph is built once per cache."""

from __future__ import annotations

import pytest
import torch

import citypath

# The models' ops are small: one intra-op thread is much faster than two on a busy 2-core box
# (a gnn step spin-waits ~0.5 s with two), and the app and the harness run the same way.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ri_graph() -> citypath.CityGraph:
    """Rhode Island alone: about 50 cities, instant to build."""
    return citypath.load_graph(states=["RI"])


@pytest.fixture(scope="session")
def small_graph() -> citypath.CityGraph:
    """Rhode Island and Massachusetts: a few hundred cities, one component."""
    return citypath.load_graph(states=["RI", "MA"])


@pytest.fixture(scope="session")
def default_graph() -> citypath.CityGraph:
    """The default graph (contiguous US); a few seconds to build the first time."""
    return citypath.load_graph()


@pytest.fixture(scope="session")
def tiny_graph() -> citypath.CityGraph:
    """Rhode Island and Massachusetts at a 20 km radius: ~540 cities, paths of ~7 cities."""
    return citypath.load_graph(radius_km=20, states=["RI", "MA"])


@pytest.fixture(scope="session")
def tiny_gru_dir(tiny_graph, tmp_path_factory):
    """A checkpoints directory holding `gru-tiny`, a GRU trained for a few seconds on `tiny_graph`."""
    from citypath.models.gru import GRUConfig
    from citypath.tasks.gru import GRUTask
    from citypath.training import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny-gru")
    cfg = TrainConfig(name="gru-tiny", total_paths=6000, batch_paths=64, epoch_paths=2000, val_paths=50,
                      card_pairs=20, steps_for_card=(1, 4), spd_paths=20000, progress=False, max_minutes=5,
                      checkpoints_dir=str(root / "checkpoints"), runs_dir=str(root / "runs"))
    task = GRUTask(tiny_graph, "small", GRUConfig(n_cities=tiny_graph.n_cities, embed_dim=16, hidden_dim=32), cfg,
                   command="(test fixture)")
    train(task, tiny_graph, cfg)
    return root / "checkpoints"
