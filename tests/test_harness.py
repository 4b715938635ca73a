"""A visitor's harness run (citypath/app/harness.py): its cost said before it starts, refused over the budget or
while another runs, off the page's thread in a process of its own, cancellable."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from citypath import settings
from citypath.app import harness
from tests.fake_models import RefiningFake, use_fake_app, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
JOIN = 60      # seconds before a test calls a wait stuck, never a measure of speed


def _model(name: str, by_steps: dict | None = None) -> RefiningFake:
    card = {"num_parameters": 1, "max_steps": 8, "graph": {"fingerprint": None}}
    if by_steps is not None:
        card["metrics"] = {"by_steps": by_steps}
    return RefiningFake(name, card)


def test_the_plan_costs_each_model_from_its_own_measured_steps():
    cheap = _model("cheap", {"4": {"ms_total_mean": 8.0}, "8": {"ms_total_mean": 40.0}})   # 5 ms a step at 8
    dear = _model("dear", {"2": {"cpu_ms_total_mean": 400.0, "ms_total_mean": 900.0}})   # CPU preferred: 200
    never = _model("never")
    p = harness.plan({"cheap": cheap, "dear": dear, "never": never}, 10, [1, 4, 16], seed=1)
    costs = dict(p.per_model_s)
    assert costs["cheap"] == pytest.approx(10 * 16 * 5.0 / 1e3)
    assert costs["dear"] == pytest.approx(10 * 16 * 200.0 / 1e3)
    assert costs["never"] == pytest.approx(10 * 16 * harness.UNKNOWN_STEP_MS / 1e3)
    assert p.unmeasured == ("never",) and p.total_s == pytest.approx(sum(costs.values()))
    assert "10 pairs x 3 model(s) x up to 16 steps" in p.text() and "never never measured" in p.text()
    # the committed evaluation's rows come first where they measured the model
    rows = pd.DataFrame([{"model": "never", "steps": 4, "ms_total_mean": 4.0, "cpu_ms_total_mean": float("nan")}])
    assert dict(harness.plan({"never": never}, 10, [16], 1, rows).per_model_s)["never"] == pytest.approx(0.16)


def test_a_plan_over_the_budget_is_refused_saying_what_fits():
    dear = _model("dear", {"1": {"ms_total_mean": 1000.0}})
    p = harness.plan({"dear": dear}, 50, [1, 2, 4], seed=1)                   # 50 x 4 x 1 s = 200 s
    why = harness.refusal(p, budget_s=60)
    assert why and "about 3.3 min of CPU" in why and "at most 1.0 min" in why and "About 15 pair(s)" in why
    assert harness.refusal(harness.plan({"dear": dear}, 15, [1, 2, 4], 1), budget_s=60) is None
    assert "not even one pair" in harness.refusal(harness.plan({"dear": dear}, 1, [64], 1), budget_s=10)
    assert harness.refusal(harness.plan({}, 5, [1], 1), budget_s=60) == "Choose at least one model and one pair."


class FakeProcess:
    """A harness process stand-in: reports progress, then finishes when told (or is terminated)."""

    def __init__(self, p, out):
        self.out, self.finish, self.ended = out, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.out.put(("progress", 0.5, "half way"))
        if self.finish.wait(JOIN):
            self.out.put(("done", pd.DataFrame({"model": ["m"], "steps": [1], "pairs": [2]}), None))
        self.ended.set()

    def is_alive(self):
        return not self.ended.is_set()

    def terminate(self):
        self.ended.set()

    def join(self, timeout=None):
        self.ended.wait(timeout)


def _until(cond) -> None:
    deadline = time.monotonic() + JOIN
    while not cond():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)


def test_one_run_at_a_time_a_second_visitor_is_told_and_a_cancel_ends_it():
    procs = []
    runs = harness.Runs(spawn=lambda p, out: procs.append(FakeProcess(p, out)) or procs[-1])
    cheap = harness.plan({"m": _model("m", {"1": {"ms_total_mean": 1.0}})}, 2, [1], 1)
    assert runs.start(cheap, "alice", budget_s=60) is None
    _until(lambda: runs.status().text == "half way")
    assert "Another visitor's harness run is going" in runs.start(cheap, "bob", budget_s=60)
    assert "Your harness run is still going" in runs.start(cheap, "alice", budget_s=60)
    assert not runs.cancel("bob")                                 # only its owner cancels it
    assert runs.cancel("alice")
    _until(lambda: not runs.status().running)
    s = runs.status()
    assert s.cancelled and s.text == "cancelled" and s.result is None and s.error is None
    assert runs.start(cheap, "bob", budget_s=60) is None          # the process is free again
    procs[-1].finish.set()
    _until(lambda: not runs.status().running)
    s = runs.status()
    assert s.owner == "bob" and list(s.result["model"]) == ["m"] and not s.cancelled


def test_a_harness_process_that_dies_says_so():
    class Dies(FakeProcess):
        def _run(self):
            self.ended.set()

    runs = harness.Runs(spawn=lambda p, out: Dies(p, out))
    assert runs.start(harness.plan({"m": _model("m", {"1": {"ms_total_mean": 1.0}})}, 1, [1], 1), "a", 60) is None
    _until(lambda: not runs.status().running)
    assert "stopped (killed or out of memory)" in runs.status().error


@pytest.mark.parametrize("value,budget", [("", 120.0), ("30", 30.0)])
def test_harness_budget_from_the_environment(value, budget):
    assert settings.harness_budget_s({"CITYPATH_HARNESS_BUDGET_S": value}) == budget


def test_a_bad_harness_budget_says_what_it_needs():
    with pytest.raises(ValueError, match="CITYPATH_HARNESS_BUDGET_S must be a whole number of at least 1"):
        settings.harness_budget_s({"CITYPATH_HARNESS_BUDGET_S": "lots"})


def test_the_page_runs_the_harness_in_its_own_process_and_refuses_over_budget(small_graph, tmp_path, monkeypatch):
    """The Test-time compute page: the cost is said before the run; over the budget the Run button is off and says
    why; within it, the run goes in a spawned process (the fake families count no run in this one) and its result
    replaces the charts' data."""
    from streamlit.testing.v1 import AppTest

    ckpt = tmp_path / "checkpoints"
    write_checkpoint(ckpt, "demo-refining", "fake-refining", small_graph)
    use_fake_app(monkeypatch, ckpt)
    monkeypatch.setattr(harness, "RUNS", harness.Runs())
    runs_here = []
    monkeypatch.setattr(RefiningFake, "refine", lambda *a, **k: runs_here.append(1) or iter(()))
    monkeypatch.setenv("CITYPATH_HARNESS_BUDGET_S", "1")
    at = AppTest.from_file(str(REPO / "pages/1_Test-time_compute.py"), default_timeout=JOIN).run()
    assert not at.exception
    said = " ".join(c.value for c in at.caption)
    assert "20 pairs x 1 model(s) x up to 16 steps" in said and "demo-refining never measured" in said
    assert at.button(key="harness-run").disabled
    assert "Over this app's budget" in " ".join(w.value for w in at.warning)
    monkeypatch.setenv("CITYPATH_HARNESS_BUDGET_S", "120")
    at.number_input(key="harness-pairs").set_value(3).run()
    at.button(key="harness-run").click().run()
    assert not at.exception
    deadline = time.monotonic() + 3 * JOIN
    while "fresh run on 3 held-out pairs" not in " ".join(md.value for md in at.markdown):
        assert time.monotonic() < deadline, harness.RUNS.status()
        time.sleep(0.5)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
    assert runs_here == []
    from citypath.app import effort

    assert len(at.dataframe) == 1 + (effort.load_report()[1] is None)     # the results, and the effort table



def test_the_load_benchmarks_harness_visitor_starts_a_run_and_cancels_it(small_graph, tmp_path):
    """`python -m benchmarks.load_app --harness N`: one visitor of the Test-time compute page starts the harness
    over the protocol a browser speaks, polls its progress as the browser's timer does, and cancels it."""
    from benchmarks.load_app import AppServer, HarnessVisitor
    from tests.fake_models import FAKE_FAMILIES, SlowFake  # noqa: F401  (the slow family: a run that lasts)

    ckpt = tmp_path / "checkpoints"
    write_checkpoint(ckpt, "demo-slow", "fake-slow", small_graph)
    env = {"CITYPATH_STATES": "RI,MA", "CITYPATH_CHECKPOINTS": str(ckpt), "CITYPATH_CACHE_DIR": str(tmp_path / "c"),
           "CITYPATH_MODEL_FAMILIES": ",".join(f"{k}={v}" for k, v in FAKE_FAMILIES.items())}
    with AppServer(env, warm=False) as server:
        h = HarnessVisitor(server.url, ["demo-slow"], 5, timeout=JOIN)
        h.start()
        assert h.started.wait(3 * JOIN)
        deadline = time.monotonic() + JOIN
        while h.polls < 2 and h.is_alive():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        h.stop.set()
        h.join(JOIN)
    assert h.errors == [] and h.outcome == "started, cancelled after the crowd" and h.polls >= 2
