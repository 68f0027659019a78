"""No secrets in the tree (issue 8): detect-secrets over every tracked file, PulseOps key shapes, key files.

Fake values in tests carry `# pragma: allowlist secret` on their line (detect-secrets' own allowlist
mechanism), so each exception is visible and reviewed where it lives. REVIEWED_FINDINGS stays empty unless a
line cannot carry that comment.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

from tests.security.tracked import ROOT, project_files

# (path, secret type) found by detect-secrets and reviewed as harmless; prefer the pragma comment.
REVIEWED_FINDINGS: set[tuple[str, str]] = set()

# Real PulseOps keys: prefix + secrets.token_urlsafe(24) (warehouse.tenants.create_api_key).
PULSEOPS_KEY = re.compile(r"po_(?:ingest|read)_[A-Za-z0-9_-]{24,}")
KEY_FILE = re.compile(
    r"(^|/)(\.env(\..+)?|\.envrc|\.pgpass|\.netrc|id_(rsa|dsa|ecdsa|ed25519)|credentials(\.json)?)$"
    r"|\.(pem|key|p12|pfx|jks|keystore|ppk|asc|gpg|kdbx)$",
    re.IGNORECASE,
)
ALLOWED_KEY_FILES = {".env.example"}


def scan(paths: list[Path]) -> list[tuple[str, int, str]]:
    """detect-secrets with its default plugins and filters (which honour `pragma: allowlist secret`).

    In this process, not detect-secrets' fork()ed pool: the test process holds other tests' threads (Kafka
    clients, thread pools), and a worker forked while one of them held a lock hung on it (a CI rehearsal:
    the pool's worker waited on its queue's semaphore until pytest-timeout, and pytest then could not exit)."""
    collection = SecretsCollection(root=str(ROOT))
    with default_settings():
        collection.scan_files(*(str(p) for p in paths), num_processors=1)
    return sorted((name, s.line_number, s.type) for name, found in collection.data.items() for s in found)


def test_no_secrets_in_tracked_files() -> None:
    found = scan(project_files())
    unreviewed = [f for f in found if (f[0], f[2]) not in REVIEWED_FINDINGS]
    assert not unreviewed, (
        "possible secrets (remove them, or mark an obvious fake with `# pragma: allowlist secret`):\n"
        + "\n".join(f"{name}:{line} {kind}" for name, line, kind in unreviewed)
    )


def test_no_pulseops_keys_in_tracked_files() -> None:
    hits = []
    for name in project_files():
        try:
            text = (ROOT / name).read_text()
        except (UnicodeDecodeError, OSError):
            continue
        hits += [f"{name}:{text.count(chr(10), 0, m.start()) + 1}" for m in PULSEOPS_KEY.finditer(text)]
    assert not hits, f"PulseOps API keys in the tree: {hits}"


def test_no_key_or_env_files_are_tracked() -> None:
    tracked = [n.as_posix() for n in project_files() if KEY_FILE.search(n.as_posix())]
    assert [n for n in tracked if Path(n).name not in ALLOWED_KEY_FILES] == []


def test_the_scan_finds_planted_secrets(tmp_path: Path) -> None:
    """Guards the guard: the same scan on planted secrets (built at run time, so this file stays clean)."""
    aws = "AKIA" + "QYLPMN2XK7HV3WJD"
    key = "po_ingest_" + secrets.token_urlsafe(24)
    private = "-----BEGIN RSA " + "PRIVATE KEY-----"
    (tmp_path / "settings.py").write_text(
        f'AWS_ACCESS_KEY_ID = "{aws}"\n'
        f'db_password = "{secrets.token_hex(12)}"\n'
        f"PEM = '''{private}\nMIIEowIBAAKCAQEA\n'''\n"
        f'FAKE = "{secrets.token_hex(12)}"  # pragma: allowlist secret\n'
    )
    found = scan([tmp_path / "settings.py"])
    kinds = {kind for _, _, kind in found}
    assert {"AWS Access Key", "Secret Keyword", "Private Key"} <= kinds, found
    assert 4 not in {line for _, line, _ in found}, "the allowlist pragma was not honoured"
    assert PULSEOPS_KEY.search(f"key = {key!r}")
    assert KEY_FILE.search("deploy/.env") and KEY_FILE.search("certs/server.pem")
    assert not KEY_FILE.search("docs/environment.md")


@pytest.mark.parametrize("name", ["api/main.py", "README.md"])
def test_listing_sees_the_project(name: str) -> None:
    """An empty file list would make every scan above pass vacuously."""
    assert Path(name) in project_files()
