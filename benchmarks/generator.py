"""Re-export of pulseops.generator, where the event generator now lives (the demo of `pulseops up --demo` uses it,
and the command line must not import benchmarks). Kept so the tests' and users' `benchmarks.generator` imports
and `python -m benchmarks.generator` keep working without touching a dozen test modules."""

import sys

from pulseops.generator import *  # noqa: F403
from pulseops.generator import __all__, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
