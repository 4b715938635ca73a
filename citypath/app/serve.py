"""Serve the app from several processes behind HAProxy with sticky sessions, on loopback.

    python -m citypath.app.serve                 # http://127.0.0.1:8501, two app processes
    python -m citypath.app.serve --port 8080

One Streamlit process uses one core and keeps each visitor's session in its own memory, so a crowd
needs several processes and every visitor pinned to one: `serving/haproxy.cfg` (HAProxy from
Debian's packages, `apt-get install haproxy`) spreads new visitors by least connections and pins
them with a cookie. What can be shared is: the graph and SPD caches on disk, and the replays
(`citypath.replay.ReplayStore`: a popular link is computed by one process, once). Ctrl-C stops
everything.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "serving" / "haproxy.cfg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_slots(config: Path) -> list[str]:
    """The variables naming the app processes' ports in the config: APP_PORT_1, APP_PORT_2, ..."""
    return sorted(set(re.findall(r"\$\{(APP_PORT_\d+)\}", config.read_text())), key=lambda v: int(v[9:]))


def app_command(port: int, *, warm: bool = True) -> list[str]:
    """The command of one app process on 127.0.0.1:`port`, run from the repo root: `python -m citypath.app.launch`
    (graph and models loaded before the port opens), or with `warm=False` plain `streamlit run app.py`
    (they load inside the first visitors' wait)."""
    flags = ["--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"]
    if warm:
        return [sys.executable, "-m", "citypath.app.launch", *flags]
    return [sys.executable, "-m", "streamlit", "run", "app.py", *flags]


def wait_healthy(url: str, proc: subprocess.Popen, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.time() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with code {proc.returncode} before it answered") from None
            if time.time() > deadline:
                raise RuntimeError(f"{what} did not answer {url}/_stcore/health within {timeout_s:.0f} s") from None
            time.sleep(0.3)


class Cluster:
    """App processes on free loopback ports behind HAProxy on `port` (free if 0); stopped on exit.

    `app_urls` are the processes' own addresses, `url` the balancer's. Logs go to `log_dir`.
    """

    def __init__(self, port: int = 0, *, config: Path = CONFIG, env: dict[str, str] | None = None,
                 log_dir: Path | None = None, haproxy: str | None = None, warm: bool = True):
        self.haproxy = haproxy or shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(self.haproxy).exists():
            raise FileNotFoundError("HAProxy is not installed: apt-get install haproxy (Debian's package)")
        self.config = Path(config)
        self.slots = app_slots(self.config)
        if not self.slots:
            raise ValueError(f"{self.config} names no app process (server lines with ${{APP_PORT_1}}, ...)")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ports = {slot: free_port() for slot in self.slots}
        self.app_urls = [f"http://127.0.0.1:{p}" for p in self.ports.values()]
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.log_dir = Path(log_dir or os.environ.get("TMPDIR", "/tmp")) / f"citypath-serve-{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.warm = warm              # app processes load the graph and models before their ports open

    @property
    def app_pids(self) -> list[int]:
        """The app processes' pids (HAProxy's is not one), once started."""
        return [p.pid for p in self.procs[:len(self.slots)]]

    def __enter__(self) -> Cluster:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for i, port in enumerate(self.ports.values(), start=1):
                log = open(self.log_dir / f"app{i}.log", "w")
                self.procs.append(subprocess.Popen(app_command(port, warm=self.warm), cwd=REPO, env=self.env,
                                                   stdout=log, stderr=subprocess.STDOUT))
            for proc, url, slot in zip(self.procs, self.app_urls, self.slots):
                # a process answers once warm (graph and models loaded; the graph built on first use ever)
                wait_healthy(url, proc, f"app process {slot}", timeout_s=900)
            env = {**self.env, "FRONT_PORT": str(self.port), **{s: str(p) for s, p in self.ports.items()}}
            log = open(self.log_dir / "haproxy.log", "w")
            self.procs.append(subprocess.Popen([self.haproxy, "-db", "-f", str(self.config)], env=env,
                                               stdout=log, stderr=subprocess.STDOUT))
            wait_healthy(self.url, self.procs[-1], "haproxy", timeout_s=30)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8501, help="the balancer's port on 127.0.0.1 (default 8501)")
    ap.add_argument("--config", default=str(CONFIG), help="HAProxy config (default serving/haproxy.cfg)")
    args = ap.parse_args(argv)
    try:
        with Cluster(args.port, config=Path(args.config), log_dir=Path.cwd() / ".serve-logs") as cluster:
            print(f"serving {cluster.url} from {len(cluster.slots)} app processes "
                  f"({', '.join(cluster.app_urls)}); logs in {cluster.log_dir}; Ctrl-C stops", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while all(p.poll() is None for p in cluster.procs):
                time.sleep(1)
            print("a process of the cluster exited; stopping the others", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
