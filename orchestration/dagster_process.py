"""`python -m orchestration.dagster_process daemon|webserver ARGS...`: Dagster's daemon (`dagster-daemon ARGS`)
or webserver (`dagster-webserver ARGS`) as `pulseops up` runs them, paced for the deployment's one long-lived
code server (pulseops/services.py dagster_code_server).

Both processes watch that code server from a thread that asks it for its server id every second
(dagster/_grpc/server_watcher.py WATCH_INTERVAL): each time a new gRPC channel, a call and a close, in the
watcher and in the code server, 120 calls a minute between the two on a system with nothing to do. The id only
changes when the code server is restarted (supervisord restarts it after a crash; `pulseops up` starts all
three together), and the daemon's sensor and run calls reach a restarted server on the same socket without the
watch. So it asks every WATCH_INTERVAL_S instead; the same pace applies to its reconnect attempts and to the
recovery of a location that failed to load (the daemon starting before the code server answers), which
Dagster already paces at 10 s (ERROR_RECOVERY_INTERVAL).

The daemon also reloads the whole code location (every repository, job and asset snapshot, serialised by the
code server) every 60 s (dagster/_daemon/controller.py RELOAD_WORKSPACE_INTERVAL), although this code server
never loads other code while it runs; a restarted one is picked up by the watch above. Every
RELOAD_WORKSPACE_S here.

Both are module constants that Dagster reads when it uses them, set before its command line runs;
tests/orchestration/test_dagster_process.py fails when a Dagster upgrade renames them.
"""

from __future__ import annotations

import sys

WATCH_INTERVAL_S = 10.0
RELOAD_WORKSPACE_S = 600


def pace() -> None:
    """Set Dagster's watch and reload intervals for this process."""
    from dagster._daemon import controller
    from dagster._grpc import server_watcher

    for module, name in ((server_watcher, "WATCH_INTERVAL"), (controller, "RELOAD_WORKSPACE_INTERVAL")):
        if not hasattr(module, name):
            raise RuntimeError(f"{module.__name__}.{name} is gone: see orchestration/dagster_process.py")
    server_watcher.WATCH_INTERVAL = WATCH_INTERVAL_S
    controller.RELOAD_WORKSPACE_INTERVAL = RELOAD_WORKSPACE_S


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("daemon", "webserver"):
        sys.exit("usage: python -m orchestration.dagster_process daemon|webserver ARGS...")
    pace()
    sys.argv = [f"dagster-{args[0]}", *args[1:]]
    if args[0] == "daemon":
        from dagster._daemon.cli import main as daemon_main

        daemon_main()
    else:
        from dagster_webserver.cli import main as webserver_main

        webserver_main()


if __name__ == "__main__":
    main()
