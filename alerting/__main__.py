"""`python -m alerting`: the alert evaluator process (supervised by `pulseops up`)."""

from __future__ import annotations

import logging
import signal
import threading

from alerting.evaluator import run_forever
from pulseops.logs import configure as configure_logging
from pulseops.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("alerts", settings.log)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    logging.getLogger(__name__).info(
        "alert evaluator: rules every %.1f s (tick %.1f s)",
        settings.alerts.interval_s,
        settings.alerts.tick_s,
    )
    run_forever(settings, stop)


if __name__ == "__main__":
    main()
