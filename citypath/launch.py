"""Start one app process warm: load what a visitor needs, then serve (the port answers only then).

    python -m citypath.launch                         # http://localhost:8501, default graph and checkpoints
    python -m citypath.launch --server.port 8502      # any `streamlit run` flag passes through

`streamlit run app.py` serves at once and loads the graph, torch and the models when the first visitor
arrives, inside that visitor's wait (and every visitor who arrives with them). This runs
`citypath.ui.warm_process` first (progress on stderr), then `streamlit run app.py` in the same process,
so the server's caches are already filled when its port opens; a balancer's health check
(`serving/haproxy.cfg`) sends no visitor to a process that is still warming. The graph is built on the
first use ever (about a minute, with progress), read from the cache after.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"
BARE_MODE_LOGGERS = ("streamlit.runtime.scriptrunner_utils.script_run_context",
                     "streamlit.runtime.caching.cache_data_api")


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
        from citypath import ui  # reads CITYPATH_RUNS_AT_ONCE: a bad value is said here too

        ui.warm_process(log=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
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
