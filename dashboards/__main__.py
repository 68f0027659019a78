"""`python -m dashboards`: serve the web dashboard (uvicorn, one process; it only relays to the API)."""

from __future__ import annotations

import uvicorn

from pulseops.logs import dict_config
from pulseops.settings import get_settings


def main() -> None:
    settings = get_settings()
    d = settings.dashboard
    uvicorn.run(
        "dashboards.app:app", factory=True, host=d.host, port=d.port, log_level="warning", access_log=False,
        log_config=dict_config("dashboard", settings.log),
    )  # fmt: skip


if __name__ == "__main__":
    main()
