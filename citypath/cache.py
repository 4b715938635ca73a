"""Where generated data lives on disk, and how it is written and checked.

A cache entry is a directory named after what it holds and a key derived from the
config and source data that produced it. It is written into a temporary sibling
directory and renamed into place only when complete; its `manifest.json` lists every
file with its size and BLAKE2b digest. A reader that finds no manifest, a missing file
or a digest mismatch treats the entry as absent, so an interrupted build or a
corrupted file is rebuilt, never silently used.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import inspect
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
FORMAT_VERSION = 1


class CacheError(OSError):
    """A cache entry could not be written (unwritable directory, full disk, ...)."""


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
        return True
    except OSError:
        return False


def cache_root(preferred: str | os.PathLike | None = None) -> Path:
    """The cache directory: `preferred`, else $CITYPATH_CACHE_DIR, else ~/.cache/citypath.

    An unwritable choice falls back to a directory under the system temp dir, with a warning.
    """
    if preferred is not None:
        root = Path(preferred)
    else:
        from citypath import settings

        root = settings.cache_dir()
    if _writable(root):
        return root
    fallback = Path(tempfile.gettempdir()) / "citypath-cache"
    if not _writable(fallback):
        raise CacheError(f"cache directory {root} is not writable, nor is the fallback {fallback}; "
                         "set CITYPATH_CACHE_DIR to a writable directory")
    warnings.warn(f"cache directory {root} is not writable; using {fallback} instead", stacklevel=2)
    return fallback


def file_digest(path: str | os.PathLike) -> str:
    """BLAKE2b hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def config_key(*parts: Any) -> str:
    """A short stable hex key for JSON-serialisable config parts."""
    blob = json.dumps([FORMAT_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class CacheEntry:
    """One directory of generated files under the cache root, valid only if its manifest checks out."""

    def __init__(self, root: Path, name: str, key: str):
        self.root = root
        self.dir = root / f"{name}-{key}"

    def path(self, filename: str) -> Path:
        return self.dir / filename

    def load(self, verify: bool = True) -> dict | None:
        """The entry's metadata if it is complete and intact, else None."""
        try:
            manifest = json.loads((self.dir / MANIFEST).read_text())
            for name, info in manifest["files"].items():
                p = self.dir / name
                if p.stat().st_size != info["size"]:
                    return None
                if verify and file_digest(p) != info["digest"]:
                    return None
            return manifest.get("meta", {})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @contextlib.contextmanager
    def writer(self, meta: dict | None = None) -> Iterator[Path]:
        """Yield a temp directory to write files into; on success it becomes this entry atomically.

        Files written there are listed in the manifest; `meta` (updated in place by the
        caller if it likes) is stored with them.
        """
        meta = {} if meta is None else meta
        tmp = self.dir.with_name(f".{self.dir.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.mkdir(parents=True)
            yield tmp
            files = {p.name: {"size": p.stat().st_size, "digest": file_digest(p)}
                     for p in sorted(tmp.iterdir()) if p.is_file()}
            write_atomic(tmp / MANIFEST, json.dumps({"files": files, "meta": meta}, indent=1, sort_keys=True))
            old = None
            if self.dir.exists():
                old = self.dir.with_name(f".{self.dir.name}.old-{uuid.uuid4().hex[:8]}")
                os.replace(self.dir, old)
            try:
                os.replace(tmp, self.dir)
            except OSError:
                if old is not None:  # put the previous entry back: a failed rewrite must not lose it
                    os.replace(old, self.dir)
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            msg = f"could not write cache entry {self.dir}: {e.strerror or e}"
            raise (CacheError(e.errno, msg) if e.errno else CacheError(msg)) from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def cached_arrays(name: str, key: str, build: Callable[[], dict[str, np.ndarray]], *,
                  meta: dict | None = None, valid: Callable[[dict[str, np.ndarray]], bool] | None = None,
                  root: Path | None = None) -> dict[str, np.ndarray]:
    """Named arrays kept in the disk cache: read them if the entry checks out, else `build()` and store.

    For derived tables that take seconds to compute and milliseconds to read. A corrupt entry, one
    that fails `valid`, or one that cannot be written (an unwritable root, a full disk) means
    building again; the caller always gets its arrays.
    """
    try:
        entry = CacheEntry(root or cache_root(), name, key)
    except CacheError:
        return build()
    if entry.load() is not None:
        try:
            with np.load(entry.path("arrays.npz"), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if valid is None or valid(arrays):
                return arrays
        except (OSError, ValueError, KeyError):
            pass
    arrays = build()
    try:
        with entry.writer(dict(meta or {})) as d:
            np.savez(d / "arrays.npz", **arrays)
    except OSError:
        pass
    return arrays


def _os_error_code(e: BaseException) -> int | None:
    """The errno behind a failed write: an OSError's own, or the "(os error N)" a library's error quotes."""
    if isinstance(e, OSError):
        return e.errno
    m = re.search(r"\(os error (\d+)\)", str(e))
    return int(m.group(1)) if m else None


def write_error(path: str | os.PathLike, e: BaseException) -> OSError:
    """An OSError saying which file could not be written and why, with the cause's errno kept.

    `e` may be an OSError or a library's own error (safetensors reports a full disk as
    `SafetensorError("... (os error 28)")`); either way ENOSPC stays ENOSPC and EACCES becomes
    PermissionError, so callers can tell a full disk from an unwritable directory.
    """
    while e.__cause__ is not None and _os_error_code(e.__cause__) is not None:
        e = e.__cause__  # the root cause, not another "could not write" around it
    code = _os_error_code(e)
    why = (e.strerror if isinstance(e, OSError) and e.strerror else None) or \
        (os.strerror(code) if code else str(e) or type(e).__name__)
    return OSError(code or errno.EIO, f"could not write {path}: {why}")


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a file via a temp file in the same directory and a rename: readers never see half of it.

    On failure (full disk, unwritable directory) the temp file is removed, a previous file at
    `path` is left as it was, and the OSError names `path` and the cause.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            raise write_error(path, e) from e
        raise


@contextlib.contextmanager
def staged_files(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Temp paths beside `paths` for the caller to write; on success they replace `paths`, else vanish.

    For files written by a library that takes a file name (safetensors), and for files that belong
    together (a checkpoint's weights and card): all are written in full before any is renamed into
    place, and if a later rename fails the earlier targets are put back from hard-link backups, so
    readers see the old set or the new one. A failed write (an OSError, or a library error quoting
    an "os error") comes out as OSError naming the first target and the cause.
    """
    targets = [Path(p) for p in paths]
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temps = [t.with_name(f".{t.name}.tmp-{tag}") for t in targets]
    backups = [t.with_name(f".{t.name}.bak-{tag}") for t in targets]
    renamed: list[tuple[int, bool, bool]] = []  # (index, target existed, backed up)
    try:
        yield temps
        for tmp in temps:
            os.chmod(tmp, 0o666 & ~_UMASK)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        for i, (tmp, target) in enumerate(zip(temps, targets)):
            existed, backed = target.exists(), False
            if existed and len(targets) > 1:
                with contextlib.suppress(OSError):
                    os.link(target, backups[i])
                    backed = True
            os.replace(tmp, target)
            renamed.append((i, existed, backed))
    except BaseException as e:
        for i, existed, backed in reversed(renamed):  # undo: the old files come back
            with contextlib.suppress(OSError):
                if backed:
                    os.replace(backups[i], targets[i])
                elif not existed:
                    os.unlink(targets[i])
        if _os_error_code(e) is not None:
            others = f" (with {', '.join(t.name for t in targets[1:])})" if len(targets) > 1 else ""
            raise write_error(f"{targets[0]}{others}", e) from e
        raise
    finally:
        for p in (*temps, *backups):
            with contextlib.suppress(OSError):
                os.unlink(p)


# -- in memory ----------------------------------------------------------------------------

def process_cache(maxsize: int = 128):
    """Cache a function's results in this process, shared and never copied, like Streamlit's
    `st.cache_resource`: arguments whose names start with `_` are not part of the key, and concurrent
    calls with one key compute it once (the others wait). Without its per-call cost: Streamlit hashed
    every argument and inspected the function's signature on every call, ~15% of the app server's time
    under 40 visitors (py-spy). Positional arguments only; the least recently used results beyond
    `maxsize` are dropped; `.clear()` empties it; `.peek(*args)` is the result held for those arguments, or
    None (nothing is computed).
    """
    def decorate(fn):
        keyed = [i for i, name in enumerate(inspect.signature(fn).parameters) if not name.startswith("_")]
        results: OrderedDict = OrderedDict()
        guard = threading.Lock()
        computing: dict[tuple, threading.Lock] = {}

        @functools.wraps(fn)
        def wrapper(*args):
            key = tuple(args[i] for i in keyed)
            with guard:
                if key in results:
                    results.move_to_end(key)
                    return results[key]
                lock = computing.setdefault(key, threading.Lock())
            with lock:                      # one computes; the others wait for it, then read
                with guard:
                    if key in results:
                        return results[key]
                try:
                    value = fn(*args)
                finally:
                    with guard:
                        computing.pop(key, None)
                with guard:
                    results[key] = value
                    while len(results) > maxsize:
                        results.popitem(last=False)
            return value

        def clear() -> None:
            with guard:
                results.clear()

        def peek(*args):
            with guard:
                return results.get(tuple(args[i] for i in keyed))

        wrapper.clear = clear
        wrapper.peek = peek
        return wrapper

    return decorate
