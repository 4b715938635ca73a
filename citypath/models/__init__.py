"""Model families and the registry that loads them by checkpoint name.

    >>> m = load_model("gru-small")                   # doctest: +SKIP
    >>> paths = list(m.refine(g, src, dst, steps=8))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from citypath import registry, settings
from citypath.models.base import (
    CheckpointError,
    IncompatibleGraph,
    ModelError,
    ModelNotFound,
    RoutingModel,
    read_card,
    sha256_file,
)
from citypath.registry import FAMILIES  # the one registry; a family's class is imported when first loaded

REPO_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


def checkpoints_dir(directory: str | os.PathLike | None = None) -> Path:
    """`directory`, else $CITYPATH_CHECKPOINTS, else the repository's checkpoints/."""
    return Path(directory or settings.checkpoints_dir() or REPO_CHECKPOINTS)


def list_models(directory: str | os.PathLike | None = None) -> list[str]:
    """Names of the checkpoints available (a card and weights side by side), sorted."""
    d = checkpoints_dir(directory)
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json") if p.with_suffix(".safetensors").is_file())


def family_class(family: str) -> type[RoutingModel]:
    families = registry.FAMILIES
    if family not in families:
        raise CheckpointError(f"unknown model family {family!r}; known: {', '.join(families)}")
    module, cls = families[family].model.split(":")
    return getattr(importlib.import_module(module), cls)


def load_model(name: str, *, directory: str | os.PathLike | None = None, graph=None) -> RoutingModel:
    """The model saved as checkpoint `name` (see `list_models()`), ready to `refine`.

    Raises ModelNotFound (listing what exists), CheckpointError for a broken file (naming it),
    IncompatibleGraph if `graph` is given and is not the graph the model was trained on.
    """
    d = checkpoints_dir(directory)
    available = list_models(d)
    if name not in available:
        raise ModelNotFound(f"no checkpoint named {name!r:.80} in {d}; available: {', '.join(available) or 'none'}")
    card = read_card(d / f"{name}.json")
    weights = d / f"{name}.safetensors"
    expected = card.get("weights_sha256")
    # Checked here for every family: weights that are not the ones the card describes are refused.
    try:
        digest = sha256_file(weights) if expected else None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint weights {weights}: {e}") from e
    if expected and digest != expected:
        raise CheckpointError(f"weights file {weights} does not match its card {name}.json "
                              f"(sha256 {digest[:12]}..., card says {expected[:12]}...): "
                              "the file is corrupt or was replaced; restore or retrain it")
    model = family_class(card["family"]).from_checkpoint(name, card, weights)
    if graph is not None:
        model.check_graph(graph)
    return model


__all__ = ["CheckpointError", "FAMILIES", "IncompatibleGraph", "ModelError", "ModelNotFound", "RoutingModel",
           "checkpoints_dir", "family_class", "list_models", "load_model"]
