"""The one registry of model families: what each is, and how a checkpoint is named in pickers.

Per family: its inference class (`citypath/models/<family>.py`), its training task
(`citypath/tasks/<family>.py`) and its size presets. Adding a family is one model file, one training
file and one line here. Nothing is imported until it is used (the registry imports nothing of the
models), so reading it costs no torch import; the catalogue of checkpoints built from their cards is
`citypath.models.catalogue`.

    >>> sorted(FAMILIES)[:3]
    ['bellman', 'gnn', 'gru']
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    model: str                      # "module:Class", a RoutingModel
    task: str | None = None         # "module:function" -> TrainTask; None: not trainable here (test families)
    sizes: tuple[str, ...] = ()     # the `--size` presets of `python -m citypath train`
    loss: str = ""                  # what its training loss means (losses compare only within one meaning)
    post_nll: bool = False          # its validation loss is the post's language-modelling NLL


def _family(name: str, sizes: tuple[str, ...], cls: str, loss: str, post_nll: bool = False) -> Family:
    return Family(f"citypath.models.{name}:{cls}", f"citypath.tasks.{name}:training_task", sizes, loss, post_nll)


NEXT_CITY_NLL = "cross-entropy per predicted city, softmax over all cities (nats)"

FAMILIES: dict[str, Family] = {
    "gru": _family("gru", ("small", "large", "tiny", "mini", "xl"), "GRUModel",
                   "cross-entropy per predicted city, softmax over the current city's neighbours (nats)"),
    "refiner": _family("refiner", ("small", "medium", "tiny"), "RefinerModel",
                       "cross-entropy per hop over the current city's neighbours (nats)"),
    "gnn": _family("gnn", ("small", "tiny", "large"), "GNNModel",
                   "smooth-L1 error of the predicted detour to the target (radius units)"),
    "postrnn": _family("postrnn", ("small", "large"), "PostRNNModel", NEXT_CITY_NLL, post_nll=True),
    "bellman": _family("bellman", ("tiny",), "BellmanModel",
                       "L1 error of the estimated distance to the target (radius units), plus the L1 weight penalty"),
    "looped": _family("looped", ("small",), "LoopedModel",
                      "L1 error of the min head's estimate against Bellman-Ford's (radius units), plus the detour "
                      "read-out's |log1p error| against the true distance and the min head's L1 weight penalty"),
    "memory": _family("memory", ("small",), "MemoryModel",
                      "cross-entropy of the expert's next hop, per supervised decision (nats)"),
    "memsearch": _family("memsearch", ("small",), "MemSearchModel",
                         "cross-entropy of the read weights against the expert's memory slots, per planning "
                         "iteration (nats)"),
    "depthlm": _family("depthlm", ("small", "large"), "DepthLMModel", NEXT_CITY_NLL, post_nll=True),
    "guided": _family("guided", ("geo", "m4", "m16", "m64"), "GuidedModel",
                      "relative gap (d - h) / d of the table's bound below the road km, plus the penalties for "
                      "passing it and for breaking the 1-Lipschitz edge constraint"),
    # No learning: the floor every model is read against (cards only, nothing to train).
    "classical": Family("citypath.models.classical:ClassicalModel"),
}


@dataclass(frozen=True)
class Anatomy:
    """What decides a family's route: the learned part, the hand-written parts that change the output, and
    the hand-written parts that are only execution shortcuts (provably the dense computation's result)."""

    learned: str
    hand_written: str
    shortcuts: str = "none"


# The one table of who decides the route, per family; every card carries its family's row ("anatomy").
ANATOMY: dict[str, Anatomy] = {
    "gru": Anatomy("the next-city distribution (city embeddings, GRU, query heads, hop-geometry weights)",
                   "decoding among the current city's graph neighbours only, never revisiting a city; best-of-N "
                   "with the exact verifier choosing among samples (steps > 1)"),
    "postrnn": Anatomy("the next-city distribution over all cities (the post's RNN)",
                       "a hop cap; best-of-N with the exact verifier choosing among samples (steps > 1)"),
    "refiner": Anatomy("the scorer of the current city's candidate neighbours",
                       "the great-circle draft (step 1), candidates restricted to the neighbours nearest the "
                       "target, no revisits, the direct jump once the target is within the radius, the per-city "
                       "reach descriptors (a max-plus recursion), the exact verifier keeping the best walk"),
    "gnn": Anatomy("the message-passing round (min aggregation, update MLP, detour read-out)",
                   "the sparse message graph (nearest and farthest neighbour per compass cone), the decoder's "
                   "score hop km + straight km + predicted detour among graph neighbours, no revisits"),
    "bellman": Anatomy("the weights of the min-aggregation round and its read-out (10 scalars)",
                       "the corridor (an ellipse around source and target that grows with the source's "
                       "estimate) and the pruning of cities whose straight detour exceeds it; the decoder's "
                       "straight-line prior for unreached cities",
                       "the frontier: a city whose state did not change sends nothing new"),
    "looped": Anatomy("the block (softmax heads over neighbours and global tokens, MLP, detour read-out) and the "
                      "min head's 10 scalars",
                      "bellman's corridor and pruning for the min head; the tube (which cities the block sees); "
                      "the decoder (min head where reached, the block's estimate, straight km after convergence); "
                      "halting",
                      "the min head's frontier"),
    "memory": Anatomy("the controller, the memory's keys, values, reads and verdicts, the neighbour scorer",
                      "moves among graph neighbours only, no revisits, backing out of dead ends at inference, "
                      "the exact verifier keeping the best walk"),
    "memsearch": Anatomy("the rating of memory slots (key writer, GRU controller, query)",
                         "best-first search itself: the open list (memory of candidates), relaxation, parent "
                         "pointers, the closed set, decrease-key, eviction of the lowest-rated slots, path "
                         "reconstruction; each slot's key is written from g and g + straight-line h (A*'s "
                         "priority handed to the network)"),
    "depthlm": Anatomy("the next-city distribution over all cities (city table and coordinate projection, "
                       "prelude, looped core, coda)",
                       "a hop cap; the loop count per token (a schedule over steps); best-of-N with the exact "
                       "verifier choosing among samples (mode \"samples\" only)"),
    "guided": Anatomy("the lower bound's table: a network of coordinates (+ a per-city memory), certified "
                      "1-Lipschitz on the graph before use; it decides only how many cities the search expands",
                      "the whole search, which decides the route: A* on a binary heap with the larger of the "
                      "straight-line km and the table's bound (exact by construction), the certification "
                      "(one Dijkstra per column), the doubling expansion budgets per step"),
    "classical": Anatomy("nothing: no learned parameters",
                         "the whole algorithm (citypath/models/classical.py)"),
}


def register(name: str, model: str, task: str | None = None) -> bool:
    """Add a family (e.g. a test-only one) unless the name is taken; True if added. Built-ins never change."""
    if name in FAMILIES:
        return False
    FAMILIES[name] = Family(model, task)
    return True


def human_count(n: float) -> str:
    """1.2M, 23.6k, 10 ('?' when unknown)."""
    if not math.isfinite(n):
        return "?"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def model_label(name: str, family: str, parameters: float, learned: bool = True) -> str:
    """'gru-small · gru · 791k params' ('astar · no learning' for a classical row): how a checkpoint is named in
    pickers and tables."""
    if not learned:
        return f"{name} · no learning"
    return f"{name} · {family} · {human_count(parameters)} params"
