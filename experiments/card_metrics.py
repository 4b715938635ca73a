"""A checkpoint card's metrics measured again, as its training run measures them at its end.

Same pairs, seed and steps as the card's training run; for when the inference of a family changed
but its weights did not. The weights are not touched; the card records the command.

    python -m experiments.card_metrics --model memory-small
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from citypath.graph import CityGraph, load_graph
from citypath.models import load_model


def refresh_card_metrics(g: CityGraph, name: str, directory: str | None = None) -> dict:
    """Measure card `name`'s metrics again as its training run did at its end; its weights are not touched."""
    from citypath.models import checkpoints_dir
    from citypath.models.base import write_card
    from citypath.training import card_metrics

    model = load_model(name, directory=directory, graph=g)
    card = dict(model.card)
    tc = card["training"]["train_config"]
    card["metrics"] = {**card_metrics(model, g, tc["card_pairs"], tc["seed"], tc["steps_for_card"]),
                       "command": f"python -m experiments.card_metrics --model {name}"}
    path = Path(directory or checkpoints_dir()) / f"{name}.json"
    write_card(path, card)
    print(f"wrote {path}: " + ", ".join(f"{k} steps: valid {v['valid']:.3f}, ratio {v['length_ratio_mean']:.4f}"
                                        for k, v in card["metrics"]["by_steps"].items()), file=sys.stderr)
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.card_metrics", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--checkpoints", default=None, help="checkpoint directory (default: checkpoints/)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = load_graph(verbose=False)
    refresh_card_metrics(g, args.model, args.checkpoints)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
