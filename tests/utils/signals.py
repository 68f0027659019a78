"""Signal handlers a library installs in the test process, put back when it is done."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def restored_signals(*signums: int) -> Iterator[None]:
    """Run a block that installs handlers for `signums` (SIGINT and SIGTERM by default) and restore the ones
    before it. Quix Streams' `Application.run()` installs bound methods of the application: left in place
    they keep it (consumer, producer, sink) alive for the rest of the session, turn a SIGTERM to pytest into
    `app.stop()`, and are inherited by any process pytest forks later (a forked detect-secrets worker that
    ignored SIGTERM hung a CI run: tests/security/test_secrets.py)."""
    wanted = signums or (signal.SIGINT, signal.SIGTERM)
    saved = {s: signal.getsignal(s) for s in wanted}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
