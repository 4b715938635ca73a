"""The layout's one-way rules, checked on the source: model files never import training code, the core never
imports the app's rooms (`citypath/view/`, `citypath/app/`), no module imports itself back through another, and
the training registry is the only list of trainable families."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import citypath
from citypath.models import FAMILIES
from citypath.training import task_factory

PACKAGE = Path(citypath.__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_model_file_imports_training_code():
    offenders = {}
    for path in sorted((PACKAGE / "models").glob("*.py")):
        bad = {m for m in imported_modules(path)
               if m == "citypath.training" or m.startswith(("citypath.training.", "citypath.tasks"))}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


ROOMS = ("citypath.view", "citypath.app")
FRONTS = {"cli.py", "__main__.py"}     # the CLI reads the view (exports, presentation) like the app does


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "frontend" not in p.parts}


def test_the_core_never_imports_the_rooms():
    """The research core (data, graph, SPD, models, metrics, harness, replay) is usable without the app: no
    module outside citypath/view/ and citypath/app/ (but the CLI, a front like the app) imports from them,
    lazy imports included; the view room never imports the app room."""
    offenders = {}
    for name, path in package_modules().items():
        if name.startswith(ROOMS) or path.name in FRONTS and path.parent == PACKAGE:
            continue
        bad = {m for m in imported_modules(path) if m.startswith(ROOMS)}
        if bad:
            offenders[name] = sorted(bad)
    for name, path in package_modules().items():
        if name.startswith("citypath.view"):
            bad = {m for m in imported_modules(path) if m.startswith("citypath.app")}
            if bad:
                offenders[name] = sorted(bad)
    assert offenders == {}


def internal_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules `path` imports (`from a import b` counts as a.b when b is a module, else a)."""
    out = set()
    for m in imported_modules(path):
        if m in modules:
            out.add(m)
        elif m.rpartition(".")[0] in modules:
            out.add(m.rpartition(".")[0])
    parents = {n for n in out for i in range(1, n.count(".") + 1) if (p := n.rsplit(".", i)[0]) in modules
               and modules[p].name == "__init__.py" and p != "citypath"}
    return (out | parents) - {module_name(path)}


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Every strongly connected group of more than one module in the package's import graph (Tarjan)."""
    graph = {n: internal_imports(p, modules) - {"citypath"} for n, p in modules.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_library_never_imports_an_experiment():
    """Studies that train, ablate or sweep live in experiments/ and use the library; never the other way round."""
    offenders = {name: sorted(m for m in imported_modules(path) if m.split(".")[0] == "experiments")
                 for name, path in package_modules().items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_loops():
    """No module imports itself back through others, lazy imports included (a package's __init__ re-exporting
    its own modules aside: `citypath` itself is left out of the graph)."""
    assert import_cycles(package_modules()) == []


def test_the_loop_check_would_catch_a_loop(tmp_path):
    pkg = tmp_path / "citypath"
    pkg.mkdir()
    (pkg / "a.py").write_text("from citypath import b\n")
    (pkg / "b.py").write_text("def f():\n    from citypath.a import x\n")
    (pkg / "c.py").write_text("import citypath.a\n")
    global PACKAGE
    real, PACKAGE = PACKAGE, pkg
    try:
        assert import_cycles(package_modules()) == [["citypath.a", "citypath.b"]]
    finally:
        PACKAGE = real


def test_the_import_check_would_catch_a_lazy_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from citypath.training import batch_rng\n    return batch_rng\n")
    assert "citypath.training" in imported_modules(f)


def test_the_registry_is_the_one_list_of_families():
    """Each family: its model class in citypath/models/<family>.py, its training task in
    citypath/tasks/<family>.py, and size presets that are exactly its task's presets."""
    import importlib

    from citypath.models import family_class

    for name, family in FAMILIES.items():
        assert family.model.startswith(f"citypath.models.{name}:") and family_class(name).family == name
        if family.task is None:        # nothing to train: the classical algorithms
            assert family.sizes == () and name == "classical"
            continue
        assert family.task == f"citypath.tasks.{name}:training_task" and callable(task_factory(name))
        presets = importlib.import_module(f"citypath.tasks.{name}").TRAIN_DEFAULTS
        assert set(family.sizes) == set(presets), name
    lists = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
             if '"citypath.models.gru:' in p.read_text() or '"citypath.tasks.gru:' in p.read_text()]
    assert lists == [], lists                      # no second list of families anywhere
    with pytest.raises(ValueError, match="trainable families"):
        task_factory("no-such-family")


def test_the_catalogue_reads_cards_only(tmp_path):
    from citypath.models import catalogue

    shipped, unreadable = catalogue()
    assert {e.family for e in shipped} <= set(FAMILIES) and unreadable == {}
    (tmp_path / "x.json").write_text("{broken")
    (tmp_path / "x.safetensors").write_bytes(b"")
    entries, unreadable = catalogue(tmp_path)
    assert entries == [] and "x" in unreadable


def test_only_the_settings_module_reads_citypath_variables():
    readers = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                     if '"CITYPATH_' in p.read_text() and p.name != "settings.py")
    assert readers == []


def test_settings_parse_what_the_docs_say():
    from citypath import settings

    env = {"CITYPATH_STATES": " ri, ma ", "CITYPATH_RADIUS_KM": "20",
           "CITYPATH_MODEL_FAMILIES": "fake=tests.fake_models:Fake,broken", "CITYPATH_CACHE_DIR": "/tmp/x"}
    assert settings.graph_states(env) == ("RI", "MA") and settings.graph_radius_km(env) == 20.0
    assert settings.extra_model_families(env) == {"fake": "tests.fake_models:Fake"}
    assert str(settings.cache_dir(env)) == "/tmp/x" and settings.checkpoints_dir({}) is None
    assert settings.cache_dir({"XDG_CACHE_HOME": "/tmp/c"}) == Path("/tmp/c/citypath")
    import platformdirs

    assert settings.cache_dir({}) == Path(platformdirs.user_cache_dir("citypath", appauthor=False))
    assert all(f"`{v}`" in settings.__doc__ for v in settings.VARIABLES)


def test_every_card_says_what_decides_its_route():
    """One table (registry.ANATOMY) says, per family, what is learned, what hand-written part changes the output
    and what is only an execution shortcut; every card carries its family's row."""
    import dataclasses
    import json

    from citypath.models import checkpoints_dir
    from citypath.registry import ANATOMY

    assert set(ANATOMY) == set(FAMILIES)
    for path in sorted(checkpoints_dir().glob("*.json")):
        card = json.loads(path.read_text())
        assert card["anatomy"] == dataclasses.asdict(ANATOMY[card["family"]]), path.name
