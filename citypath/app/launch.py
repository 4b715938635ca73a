"""Start one app process warm: load what a visitor needs, then serve (the port answers only then).

    python -m citypath.app.launch                         # http://localhost:8501, default graph and checkpoints
    python -m citypath.app.launch --server.port 8502      # any `streamlit run` flag passes through

`streamlit run app.py` serves at once and loads the graph, torch and the models when the first visitor
arrives, inside that visitor's wait (and every visitor who arrives with them). This runs
`warm_process` first (progress on stderr), then `streamlit run app.py` in the same process,
so the server's caches are already filled when its port opens; a balancer's health check
(`serving/haproxy.cfg`) sends no visitor to a process that is still warming. The graph is built on the
first use ever (6-10 s on a 2-core CPU, with progress; the whole first warm-up into an empty cache took 24 s
there), read from the cache after (0.7 s). The port is Streamlit's default, 8501; `--server.port N` changes it.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path

from citypath import settings

APP = Path(__file__).resolve().parents[2] / "app.py"
BARE_MODE_LOGGERS = ("streamlit.runtime.scriptrunner_utils.script_run_context",
                     "streamlit.runtime.caching.cache_data_api")


def _warm_page_icon() -> None:
    try:
        from streamlit.string_util import is_emoji  # what st.set_page_config calls on the icon
    except ImportError:                                # moved in another Streamlit: the first visitor pays
        return
    from citypath.app.resources import PAGE_ICON

    is_emoji(PAGE_ICON)


def warm_process(log=None) -> dict[str, float]:
    """Do in this process, before any visitor, what the first visitor of the default page would wait for:
    the graph, the catalogue, the labels, the map's static layers, the models, the default view's routes and the
    interesting pairs' (each run to the steps slider's maximum where the family's steps are a prefix of more: see
    `citypath.replay.ReplayStore`; read from the store after the first launch), and the model worker processes
    (`citypath.app.compute`: the visitors' and the one for later) started with the default models loaded, and the
    search process of new pairs' optimal paths (`citypath.app.searches`) with the graph loaded.

    `python -m citypath.app.launch` runs it before the server listens, so a visitor never meets a cold process
    (and HAProxy's health check sends none to a process still warming). `log(line)` hears each stage as it
    ends. Returns the seconds of each stage."""
    from citypath.app import compute, downloads, replays, resources, searches, url
    from citypath.view.maplayers import states_records, write_static_json

    times: dict[str, float] = {}

    def stage(name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        times[name] = round(time.perf_counter() - t0, 2)
        if log:
            log(f"{name}: {times[name]:.1f} s")
        return out

    g = stage("graph", resources.graph)
    cat = stage("catalogue", resources.catalog)
    stage("labels", lambda: (resources.label_index(g, g.fingerprint), downloads.file_city_names(g, g.fingerprint)))
    # Streamlit's first check of the page's emoji icon imports its emoji table (~0.1-0.5 s of the first
    # visitors' wait under a crowd): done here instead
    stage("page icon", _warm_page_icon)
    # the static files only: whether they are served is Streamlit's option, read by the first run
    stage("map layers", lambda: (resources.city_records(g, g.fingerprint), states_records(),
                                 write_static_json(g, resources.STATIC_DIR)))
    stage("interesting pairs", lambda: resources.interesting(g))
    mset = stage("models", lambda: resources.models(g))
    view, _ = url.parse_query_params({}, g, cat.names, max_steps=cat.steps_max, parameters=cat.parameters)
    store = replays._replay_store()
    stage("the default view's routes", lambda: _warm_routes(store, mset, g, cat.steps_max, view.question()))
    picks_, _ = resources.interesting(g)
    stage(f"the {len(picks_)} interesting pairs' routes",
          lambda: [_warm_routes(store, mset, g, cat.steps_max,
                                dataclasses.replace(view, source=p.source, target=p.target).question())
                   for p in picks_])
    service = compute.service()
    if service is not None:      # the worker processes start and load the graph and the default models now
        stage("model workers", lambda: _warm_worker(service, store, mset, view.question(), cat.steps_max))
        stage("search process", lambda: searches.warm(g, view.source))
    return times


def _warm_routes(store, mset, g, steps_max: int, question) -> None:
    """The question's routes, a prefix family's run to the steps slider's maximum (`ReplayStore`), so moving the
    slider or loading the pair waits for nothing."""
    from citypath.app import replays

    for name in question.models:
        if name in mset.models:
            store.get_or_compute(mset.models[name], g, question.source, question.target, question.steps,
                                 question.seed, extend_to=steps_max)
    for name in replays.replays_so_far(mset, g, question)[1]:
        replays.replay(mset, g, name, question)


def _warm_worker(service, store, mset, question, steps_max: int) -> None:
    """The model worker processes' first jobs, waited for: the visitors' workers run the question's models and the
    worker for later their run to the steps slider's maximum (stored already by `_warm_routes`, so read), so each
    has started and loaded the graph and them before a visitor comes (a worker started under a crowd spent its
    start-up, importing citypath, at full priority: a worker lowers its priority only once it has started)."""
    from citypath.app import replays

    names = [name for name in question.models if name in mset.models]
    done = [service.submit(replays._job(name, question, store, mset=mset), 0.0) for name in names]
    done += [service.submit(replays._job(name, question, store, steps_max), 0.0, background=True) for name in names]
    for handle in done:
        service.wait_any([handle], replays.WAIT_S)
        if handle.error:
            raise OSError(f"the model worker process failed: {handle.error}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    from streamlit.logger import get_logger

    # Outside a script run ("bare mode") Streamlit warns that there is no session: true, and irrelevant here.
    for name in BARE_MODE_LOGGERS:
        get_logger(name).setLevel(logging.ERROR)
    t0 = time.perf_counter()
    print("citypath: loading the graph and the models before serving…", file=sys.stderr, flush=True)
    try:
        settings.check()        # every CITYPATH_* number first: a typo is said before anything loads
        warm_process(log=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    except (OSError, ValueError) as e:    # an unwritable cache, a bad CITYPATH_* value: say which, serve nothing
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"citypath: ready in {time.perf_counter() - t0:.1f} s; starting the server", file=sys.stderr, flush=True)
    for name in BARE_MODE_LOGGERS:
        get_logger(name).setLevel(logging.WARNING)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *argv]
    return cli.main()


if __name__ == "__main__":
    raise SystemExit(main())
