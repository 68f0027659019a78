"""`pulseops logs`: the last lines of the services' logs in <state_dir>/logs, then new lines with -f."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from pulseops import runtime
from pulseops.settings import Settings


def logs_command(settings: Settings, service: str | None, follow: bool, lines: int) -> int:
    """The last lines of one service's log (or of each), then new lines as they come with -f."""
    state = Path(settings.state_dir)
    files = runtime.log_files(state, service)
    if not files:
        known = ", ".join(sorted(runtime.log_files(state))) or "none yet"
        print(f"no log for {service!r} in {state / 'logs'} (services: {known})", file=sys.stderr)
        return 1
    prefix = len(files) > 1
    width = max(len(n) for n in files)
    try:
        for name, path in files.items():
            for line in _last_lines(path, lines):
                print(f"{name:<{width}} | {line}" if prefix else line)
        sys.stdout.flush()
        if follow:
            tails = {n: runtime.Tail(p) for n, p in files.items()}
            while True:
                for name, tail in tails.items():
                    for line in tail.lines():
                        print(f"{name:<{width}} | {line}" if prefix else line, flush=True)
                time.sleep(0.25)
    except (KeyboardInterrupt, BrokenPipeError):
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _last_lines(path: Path, n: int) -> list[str]:
    """The last `n` lines, reading only the file's tail (at most 256 bytes a line)."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 256 * n))
        data = f.read()
    lines = data.decode("utf-8", "replace").splitlines()
    if size > 256 * n:
        lines = lines[1:]  # the first may be cut
    return lines[-n:] if n > 0 else []
