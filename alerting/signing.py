"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", sent with the timestamp.

Signing the timestamp with the body makes a captured request useless after the tolerance window (a replay
with a new timestamp fails the signature); receivers also dedupe on `X-PulseOps-Delivery`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-PulseOps-Timestamp"
SIGNATURE_HEADER = "X-PulseOps-Signature"
DELIVERY_HEADER = "X-PulseOps-Delivery"
EVENT_HEADER = "X-PulseOps-Event"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def sign(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """Headers to send with `body`."""
    ts = int(now if now is not None else time.time())
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature(secret, ts, body)}


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """What a receiver does: timestamp within tolerance, then a constant-time compare of the signature."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        ts = int(lowered[TIMESTAMP_HEADER.lower()])
        given = lowered[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        return False
    current = now if now is not None else time.time()
    if abs(current - ts) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, ts, body), given)
