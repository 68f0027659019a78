"""tests/fixtures/redis.py gives each test process a Redis database of its own, because the `redis_url`
fixture wipes it: a second test run on the same machine must not get this run's database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.redis import REDIS_URL

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_test_process_gets_another_redis_database():
    env = {k: v for k, v in os.environ.items() if k != "PULSEOPS_TEST_REDIS_URL"}
    code = "from tests.fixtures.redis import REDIS_URL; print(REDIS_URL)"
    other = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other.startswith("redis://127.0.0.1:6379/")
    if "PULSEOPS_TEST_REDIS_URL" not in os.environ:
        assert other != REDIS_URL
