"""A checkpoint is never unpickled: a malicious pickle dropped into checkpoints/ is refused, not run."""

import json
import pickle
import shutil
from pathlib import Path

import pytest

import citypath
from citypath.models import CheckpointError, list_models, load_model

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("family_card", sorted(p.name for p in SHIPPED.glob("*.json"))[:1] or ["none"])
def test_a_pickle_posing_as_a_checkpoint_is_refused_and_never_executed(tmp_path, family_card):
    if family_card == "none":
        pytest.skip("no shipped checkpoint to copy a card from")
    marker = tmp_path / "executed"
    blob = pickle.dumps(_Payload(marker))
    d = tmp_path / "checkpoints"
    d.mkdir()
    # A real card beside pickled "weights", and bare pickles under the usual torch names.
    shutil.copy(SHIPPED / family_card, d / "evil.json")
    (d / "evil.safetensors").write_bytes(blob)
    for name in ("model.pt", "model.pth", "model.pkl", "model.bin"):
        (d / name).write_bytes(blob)
    assert list_models(d) == ["evil"]                # the .pt/.pkl files are not checkpoints at all
    with pytest.raises(CheckpointError, match="evil"):
        load_model("evil", directory=d)
    assert not marker.exists()


def test_checkpoint_names_cannot_reach_other_paths(tmp_path):
    for name in ("../checkpoints/gru-small", "/etc/passwd", "gru-small/../../x", "", "x" * 10_000):
        with pytest.raises(citypath.models.ModelNotFound):
            load_model(name, directory=tmp_path)


@pytest.mark.parametrize("name", list_models(SHIPPED) or ["none"])
def test_the_card_must_match_its_weights(tmp_path, name):
    if name == "none":
        pytest.skip("no shipped checkpoint")
    d = tmp_path / "checkpoints"
    d.mkdir()
    shutil.copy(SHIPPED / f"{name}.safetensors", d / "x.safetensors")
    card = json.loads((SHIPPED / f"{name}.json").read_text())
    card["weights_sha256"] = "0" * 64
    (d / "x.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError):
        load_model("x", directory=d)
