"""`python -m pulseops.launch [--nice N] -- CMD...`: exec CMD (niced by N) so that it gets SIGTERM when its
parent (supervisord) dies.

Why: `pulseops up` runs supervisord, which runs the services. If supervisord itself is killed (SIGKILL, OOM),
its children would be re-parented to init and keep holding their ports. Linux's PR_SET_PDEATHSIG asks the
kernel to signal a process when its parent exits, and it survives exec, so setting it here and then exec'ing
the service costs nothing at run time. It must be set in the child (there is no way to set it for another
process), hence this trampoline; prctl via ctypes because the standard library has no binding. On other
systems the command is exec'd unchanged.
"""

from __future__ import annotations

import os
import sys

from pulseops.lifetime import die_with_parent, preexec_die_with_parent  # noqa: F401 - re-exported


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "--nice":
        # Background services (Dagster) below the ingest API on the CPU; niceness survives exec.
        os.nice(int(args[1]))
        args = args[2:]
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        sys.exit("usage: python -m pulseops.launch [--nice N] [--] CMD [ARGS...]")
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl: the signal will never come
        sys.exit(1)
    os.execvp(args[0], args)  # noqa: S606 - the service command of pulseops/services.py


if __name__ == "__main__":
    main()
