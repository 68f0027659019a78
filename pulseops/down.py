"""`pulseops down`: stop the system of `pulseops up` (detached or not) in this state dir, and wait for it."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from pulseops import runtime
from pulseops.settings import Settings


def down_command(settings: Settings) -> int:
    """Stop a system started by `pulseops up` (detached or not) in this state dir; waits until it is gone."""
    state = Path(settings.state_dir)
    if not runtime.running(state):
        print(f"nothing running with state dir {state}")
        return 0
    info = runtime.read_info(state)
    try:
        runtime.rpc(state).supervisor.shutdown()
    except Exception:  # no answer on the socket: signal it (SIGTERM is supervisord's orderly shutdown)
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(int(info.get("supervisord_pid")), signal.SIGTERM)
    print("stopping...", flush=True)
    deadline = time.monotonic() + 120
    while runtime.running(state):
        if time.monotonic() > deadline:
            print(runtime.holder_message(state), file=sys.stderr)
            return 1
        time.sleep(0.2)
    print("all services stopped")
    return 0
