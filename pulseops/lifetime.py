"""Child processes that die with their parent: PR_SET_PDEATHSIG, set in the child.

Why: a service's helper process (the landing worker's overflow lander, streams/__main__.py) or a service under
supervisord (pulseops/launch.py) must not outlive what started it, holding ports or consuming a topic as an
orphan. Linux's PR_SET_PDEATHSIG asks the kernel to signal a process when its parent exits; prctl via ctypes
because the standard library has no binding. A no-op on other systems. Core, so that services may use it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send `sig` to this process when its parent exits (Linux; no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def preexec_die_with_parent(sig: int = signal.SIGTERM):
    """A `preexec_fn` for subprocess.Popen: the child gets `sig` when the calling process exits.

    prctl is resolved here, in the parent: between fork and exec the child must not dlopen (another thread
    of the parent may have held the loader's lock at fork time)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # exited before prctl took effect
            os._exit(1)

    return preexec
