"""External tools some tests need (wrk, Chromium): skipped where they are missing, except under `CI=true`.

`.ci/run` installs them and fails when it cannot, so on CI a missing tool must fail its tests rather than
let them skip silently.
"""

from __future__ import annotations

import os

import pytest

ON_CI = os.environ.get("CI", "").lower() == "true"


def skip_unless_installed(missing: bool, what: str) -> pytest.MarkDecorator:
    """skipif `missing`, but never under CI=true (the test then runs and `require` fails it)."""
    return pytest.mark.skipif(missing and not ON_CI, reason=f"{what} is not installed (.ci/run installs it)")


def require(missing: bool, what: str) -> None:
    """Fail the running test with a clear reason when `what` is missing (reached only under CI=true)."""
    if missing:
        pytest.fail(f"{what} is not installed and CI=true: .ci/run should have installed it")
