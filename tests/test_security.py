"""Security: nothing is unpickled, the server keeps its protections, no secret is committed.

- A checkpoint is never unpickled: a malicious pickle dropped into checkpoints/ is refused, not run;
  no code in citypath/, app.py or pages/ calls pickle/torch.load without weights_only=True (AST scan).
- .streamlit/config.toml keeps XSRF protection on and the upload limit small.
- No file tracked by git holds a private key, a cloud/API token or a hard-coded password.
"""

import ast
import json
import os
import pickle
import re
import shutil
import textwrap
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


# The classical rows have no weights; these are the checkpoints that do.
WEIGHTED = [n for n in list_models(SHIPPED) if (SHIPPED / f"{n}.safetensors").is_file()]


@pytest.mark.parametrize("family_card", [f"{n}.json" for n in WEIGHTED[:1]] or ["none"])
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


@pytest.mark.parametrize("name", WEIGHTED or ["none"])
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


# -- the server's settings ----------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
MAX_UPLOAD_MB = 5


def test_streamlit_config_keeps_xsrf_protection_and_a_small_upload_limit():
    import tomllib

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server = config.get("server", {})
    assert server.get("enableXsrfProtection") is True
    assert server.get("enableCORS", True) is True       # XSRF protection needs CORS protection on
    assert isinstance(server.get("maxUploadSize"), int) and 1 <= server["maxUploadSize"] <= MAX_UPLOAD_MB
    assert server.get("maxMessageSize", 200) <= 200     # left at Streamlit's default, or lower


def test_streamlit_reads_those_settings_from_the_repository(tmp_path):
    """What Streamlit itself parses when started from the repository root (the way README starts it)."""
    import subprocess
    import sys

    code = ("from streamlit import config; config.get_config_options(force_reparse=True); "
            "print(config.get_option('server.enableXsrfProtection'), config.get_option('server.maxUploadSize'))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env["HOME"] = str(tmp_path)                          # no user-level config to mask the repository's
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[0] == "True" and 1 <= int(out[1]) <= MAX_UPLOAD_MB


# -- no secrets in the repository ----------------------------------------------------------------------

# Built from pieces so that this file does not match its own patterns.
SECRET_PATTERNS = {
    "private key": re.compile("-----" + r"BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY" + "-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)" + r"[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
    "OpenAI-style key": re.compile(r"\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_-]{20,}"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "assigned secret": re.compile(r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|"
                                  r"password|passwd)\b[\"']?\s*[:=]\s*[\"'][^\"'\s]{12,}[\"']"),
}


def find_secrets(text: str) -> list[str]:
    return [f"{kind}: {m.group(0)[:24]}..." for kind, rx in SECRET_PATTERNS.items() for m in rx.finditer(text)]


def test_the_secret_scanner_finds_planted_secrets():
    planted = {
        "-----" + "BEGIN RSA PRIVATE KEY" + "-----\nMIIE...": "private key",
        "-----" + "BEGIN OPENSSH PRIVATE KEY" + "-----": "private key",
        "aws_key = '" + "AKIA" + "IOSFODNN7EXAMPLE'": "AWS access key id",
        "token: " + "ghp_" + "a1B2" * 9: "GitHub token",
        "OPENAI=" + "sk-" + "proj-" + "x" * 40: "OpenAI-style key",
        "api_key = " + '"' + "Zm9vYmFyYmF6cXV4cXV1eA" + '"': "assigned secret",
        '{"password": "' + "correct-horse-battery" + '"}': "assigned secret",
    }
    for text, kind in planted.items():
        assert any(hit.startswith(kind) for hit in find_secrets(text)), text
    for harmless in ('api_key = os.environ["API_KEY"]', "password = getpass()", "sk-learn", 'token = ""',
                     "skip-connections", "max_tokens = 16"):
        assert not find_secrets(harmless), harmless


def test_no_tracked_file_holds_a_secret():
    try:
        files = subprocess_git_ls_files()
    except (OSError, RuntimeError) as e:
        pytest.skip(f"not a git checkout: {e}")
    assert files, "git ls-files listed nothing"
    hits = {}
    for rel in files:
        p = REPO / rel
        if not p.is_file() or p.stat().st_size > 20_000_000:
            continue
        data = p.read_bytes()
        if b"\0" in data[:8192] or rel.endswith(".safetensors"):
            continue  # binary (weights, images): no text to leak
        found = find_secrets(data.decode("utf-8", "replace"))
        if found:
            hits[rel] = found
    assert not hits, hits


def subprocess_git_ls_files() -> list[str]:
    import subprocess

    proc = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace").strip())
    return [f for f in proc.stdout.decode().split("\0") if f]


# -- nothing is unpickled -------------------------------------------------------------------------------

UNSAFE_LOADS = {"pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads",
                "cPickle.load", "cPickle.loads", "dill.load", "dill.loads", "joblib.load", "pandas.read_pickle",
                "shelve.open", "marshal.load", "marshal.loads"}


def unsafe_loads(source: str, filename: str = "<source>") -> list[str]:
    """Calls that may run a pickle: pickle/dill/joblib loads, torch.load without weights_only=True,
    numpy.load with allow_pickle=True. Import aliases (`import pickle as p`, `from torch import load`) are followed."""
    tree = ast.parse(source, filename)
    alias: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                alias[a.asname or a.name] = f"{node.module}.{a.name}"

    def qualified(func: ast.expr) -> str | None:
        parts = []
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if not isinstance(func, ast.Name):
            return None
        return ".".join([alias.get(func.id, func.id), *reversed(parts)])

    def keyword(call: ast.Call, name: str):
        for kw in call.keywords:
            if kw.arg == name:
                return kw.value.value if isinstance(kw.value, ast.Constant) else "<dynamic>"
        return None

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = qualified(node.func)
        if name is None:
            continue
        bad = (name in UNSAFE_LOADS
               or name == "torch.load" and keyword(node, "weights_only") is not True
               or name == "numpy.load" and keyword(node, "allow_pickle") not in (None, False))
        if bad:
            found.append(f"{filename}:{node.lineno}: {name}")
    return found


def test_the_unpickling_scan_finds_planted_calls():
    planted = textwrap.dedent("""
        import pickle, torch
        import pickle as p
        from pickle import loads as l
        from torch import load
        import numpy as np
        import pandas as pd
        pickle.load(f); p.loads(b); l(b); torch.load("x"); load("x", weights_only=False)
        torch.load("x", weights_only=flag); np.load("x", allow_pickle=True); pd.read_pickle("x")
    """)
    assert len(unsafe_loads(planted)) == 8
    safe = ('import torch, numpy as np\ntorch.load("x", weights_only=True)\n'
            'np.load("x")\nnp.load("x", allow_pickle=False)\n')
    assert unsafe_loads(safe) == []


def test_no_code_in_the_app_or_library_can_unpickle():
    sources = [*sorted((REPO / "citypath").rglob("*.py")), REPO / "app.py", *sorted((REPO / "pages").glob("*.py"))]
    assert len(sources) > 10
    found = [hit for p in sources for hit in unsafe_loads(p.read_text(), str(p.relative_to(REPO)))]
    assert not found, found
