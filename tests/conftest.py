"""Shared fixtures: small regional graphs keep the suite fast; the default graph is built once per cache."""

from __future__ import annotations

import pytest

import citypath


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
