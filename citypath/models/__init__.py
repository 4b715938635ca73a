"""Model families and the registry that loads them by checkpoint name.

    >>> m = load_model("gru-small")                   # doctest: +SKIP
    >>> paths = list(m.refine(g, src, dst, steps=8))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
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
from citypath.registry import FAMILIES, model_label  # the one registry; a family's class is imported when first loaded

REPO_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


def checkpoints_dir(directory: str | os.PathLike | None = None) -> Path:
    """`directory`, else $CITYPATH_CHECKPOINTS, else the repository's checkpoints/."""
    return Path(directory or settings.checkpoints_dir() or REPO_CHECKPOINTS)


def list_models(directory: str | os.PathLike | None = None) -> list[str]:
    """Names of the checkpoints available (a card and weights side by side, or a card of a row with no weights:
    the classical algorithms), sorted."""
    d = checkpoints_dir(directory)
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json") if p.with_suffix(".safetensors").is_file() or _weightless(p))


def _weightless(card_path: Path) -> bool:
    """A card that declares it has no weights (`"weights": null`: the classical algorithms)."""
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and _declares_no_weights(card)


def _declares_no_weights(card: dict) -> bool:
    return "weights" in card and card["weights"] is None


@dataclass(frozen=True)
class Entry:
    """One checkpoint as its card describes it (no weights read)."""

    name: str
    family: str
    parameters: int
    max_steps: int
    label: str
    learned: bool = True     # False: a classical algorithm (the floor), in its own group "no learning"
    ever_valid: bool = True  # False: its card measured no valid route at any step (never a default comparison)


def catalogue(directory: str | os.PathLike | None = None) -> tuple[list[Entry], dict[str, str]]:
    """The checkpoints in `directory` (default: `models.checkpoints_dir()`), from their cards only, and for
    each card that cannot be read, why."""
    d = Path(checkpoints_dir(directory))
    entries, unreadable = [], {}
    for name in list_models(d):
        try:
            card = read_card(d / f"{name}.json")
            family, params = str(card["family"]), int(card["num_parameters"])
            learned = bool(card.get("learned", True))
            entries.append(Entry(name, family, params, int(card["max_steps"]),
                                 model_label(name, family, params, learned), learned, _ever_valid(card)))
        except (CheckpointError, ValueError, TypeError, KeyError) as e:
            unreadable[name] = f"{type(e).__name__}: {e}"
    return entries, unreadable


def _ever_valid(card: dict) -> bool:
    """Whether a card's measured metrics (if any) found a valid route at some step."""
    by_steps = (card.get("metrics") or {}).get("by_steps") or {}
    return not by_steps or any((m or {}).get("valid", 1) > 0 for m in by_steps.values())


SCAFFOLD_SUFFIX = ".scaffold"   # load_model("looped-small.scaffold"): the model's attribution control


def scaffolded(directory: str | os.PathLike | None = None) -> list[str]:
    """Names of the checkpoints whose family runs a learned part inside a hand-written scaffold: each has an
    attribution control, `load_model(name + ".scaffold")` (the scaffold with the learned part replaced by its
    hand-set equivalent; `RoutingModel.scaffold_control`)."""
    from citypath.models.base import read_card

    d = checkpoints_dir(directory)
    out = []
    for name in list_models(d):
        try:
            family = read_card(d / f"{name}.json")["family"]
            cls = family_class(family)
        except ModelError:
            continue
        if cls.scaffold_control is not RoutingModel.scaffold_control:
            out.append(name)
    return out


def family_class(family: str) -> type[RoutingModel]:
    families = registry.FAMILIES
    if family not in families:
        raise CheckpointError(f"unknown model family {family!r}; known: {', '.join(families)}")
    module, cls = families[family].model.split(":")
    return getattr(importlib.import_module(module), cls)


def load_model(name: str, *, directory: str | os.PathLike | None = None, graph=None) -> RoutingModel:
    """The model saved as checkpoint `name` (see `list_models()`), ready to `refine`.

    `name + ".scaffold"` (e.g. "looped-small.scaffold") gives that checkpoint's attribution control: its scaffold
    with the learned part replaced by the hand-set equivalent (see `scaffolded()`).

    Raises ModelNotFound (listing what exists), CheckpointError for a broken file (naming it),
    IncompatibleGraph if `graph` is given and is not the graph the model was trained on.
    """
    d = checkpoints_dir(directory)
    available = list_models(d)
    base = name.removesuffix(SCAFFOLD_SUFFIX) if isinstance(name, str) else name
    if base != name and base in available:
        model = load_model(base, directory=d, graph=graph)
        control = model.scaffold_control()
        if control is None:
            raise ModelNotFound(f"{base!r} ({model.family}) has no hand-written scaffold around a learned part, so no "
                                f"{name!r}; models with one: {', '.join(scaffolded(d)) or 'none'}")
        return control
    if name not in available:
        raise ModelNotFound(f"no checkpoint named {name!r:.80} in {d}; available: {', '.join(available) or 'none'}")
    card = read_card(d / f"{name}.json")
    # A classical row learned nothing: no weights to read or check.
    weights = None if _declares_no_weights(card) else d / f"{name}.safetensors"
    expected = card.get("weights_sha256") if weights is not None else None
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


__all__ = ["CheckpointError", "Entry", "FAMILIES", "IncompatibleGraph", "ModelError", "ModelNotFound", "RoutingModel",
           "SCAFFOLD_SUFFIX", "catalogue", "checkpoints_dir", "family_class", "list_models", "load_model", "scaffolded"]
