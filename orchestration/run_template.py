"""What every run worker needs, imported once in the template process that run workers are forked from
(orchestration/run_workers.py): Dagster's run entry point, this code location with its jobs resolved, and
the instance's PostgreSQL storages. Importing it opens no connection and starts no thread.

It never raises: the forkserver would exit on an error other than ImportError and no run could start; a run
forked from a template that failed to load something imports it itself, as a spawned one does."""

import sys
import traceback

try:
    import dagster._grpc.impl  # noqa: F401  start_run_in_subprocess, the run worker's entry point
    from dagster._core.instance import DagsterInstance  # noqa: F401

    import orchestration.instance_storage  # noqa: F401  SQLAlchemy, dagster-postgres, psycopg2
    from orchestration.definitions import defs

    defs.get_repository_def().get_all_jobs()  # resolved here once, not in every run
except Exception:
    print("orchestration.run_template: preload incomplete, runs import the rest themselves", file=sys.stderr)
    traceback.print_exc()
