"""`python -m alerting`: the alert evaluator process (supervised by `pulseops up`)."""

from __future__ import annotations

import logging
import signal
import threading

from alerting.evaluator import run_forever
from pulseops.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s alerts %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    settings = get_settings()
    logging.getLogger(__name__).info(
        "alert evaluator: rules every %.1f s (tick %.1f s)",
        settings.alerts.interval_s,
        settings.alerts.tick_s,
    )
    run_forever(settings, stop)


if __name__ == "__main__":
    main()
