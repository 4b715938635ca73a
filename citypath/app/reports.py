"""Reading a committed experiment report for a page: the JSON, or why there is none yet."""

from __future__ import annotations

import json
from pathlib import Path


def load_report(path: Path, command: str, key: str) -> tuple[dict, str | None]:
    """The report at `path`, or ({}, why not): missing (say `command` makes it), unreadable, or holding nothing
    under `key`."""
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}, f"{path} does not exist yet ({command})"
    except (OSError, ValueError) as e:
        return {}, f"{path} cannot be read: {e}"
    if not isinstance(report, dict) or not report.get(key):
        return {}, f"{path} holds nothing measured yet"
    return report, None
