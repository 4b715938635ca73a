"""citypath: can a small model that thinks longer route between US cities better than a big one?

The public API:

    import citypath
    g = citypath.load_graph()                       # ~21,200 US cities, edges within 90 km
    src, dst = g.find_city("Boston, MA"), g.find_city("Denver, CO")
    path = g.shortest_path(src, dst)                # Dijkstra
    citypath.evaluate_path(g, path, src, dst)       # illegal jumps, length ratio, valid, ...
    citypath.is_heldout(src, dst)                   # test pair? (never trained on)
    citypath.pair_split(src, dst)                   # "train", "validation" or "test"
    m = citypath.load_model("gru-small")            # a checkpoint; citypath.list_models() lists them
    for step_path in m.refine(g, src, dst, steps=8): ...
"""

from citypath.graph import CityGraph, CityNotFound, CityNotInGraph, GraphConfig, load_graph
from citypath.metrics import METRIC_DEFINITIONS, evaluate_path, evaluate_paths
from citypath.models import list_models, load_model
from citypath.split import heldout_mask, is_heldout, is_validation, pair_split

__all__ = [
    "CityGraph", "CityNotFound", "CityNotInGraph", "GraphConfig", "METRIC_DEFINITIONS",
    "evaluate_path", "evaluate_paths", "heldout_mask", "is_heldout", "is_validation", "list_models", "load_graph",
    "load_model", "pair_split",
]
__version__ = "0.1.0"
