"""The layout's one-way rules, checked on the source: model files never import training code, and the
training registry is the only list of trainable families."""

from __future__ import annotations

import ast
from pathlib import Path

import citypath
from citypath.models import FAMILIES
from citypath.training import TASKS, task_factory

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


def test_the_import_check_would_catch_a_lazy_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from citypath.training import batch_rng\n    return batch_rng\n")
    assert "citypath.training" in imported_modules(f)


def test_every_model_family_with_a_trainer_is_in_the_registry():
    assert set(TASKS) <= set(FAMILIES)
    for family in TASKS:
        assert callable(task_factory(family))
        module = TASKS[family].split(":")[0]
        assert module == f"citypath.tasks.{family}"


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
