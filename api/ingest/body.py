"""Read a request body under a byte cap, inflating gzip with a cap on the decompressed size (gzip bombs)."""

from __future__ import annotations

import zlib

from fastapi import Request
from starlette.requests import ClientDisconnect

from api.errors import ApiError


async def read_body(request: Request, max_bytes: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise ApiError(413, "payload_too_large", [("body", f"larger than {max_bytes} bytes")])
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise ApiError(413, "payload_too_large", [("body", f"larger than {max_bytes} bytes")])
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(
            400, "client_disconnected", [("body", "connection closed before the body was read")]
        ) from None
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise ApiError(415, "unsupported_encoding", [("Content-Encoding", "only gzip is accepted")])
    return _gunzip(body, max_bytes)


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    """Inflate every gzip member (RFC 1952 allows several), never producing more than max_bytes."""
    out = bytearray()
    data = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data, max_bytes + 1 - len(out))
        except zlib.error as exc:
            raise ApiError(400, "invalid_gzip", [("body", f"not valid gzip: {exc}")]) from None
        if len(out) > max_bytes or inflater.unconsumed_tail:
            raise ApiError(
                413, "payload_too_large", [("body", f"decompressed body larger than {max_bytes} bytes")]
            )
        if not inflater.eof:
            raise ApiError(400, "invalid_gzip", [("body", "truncated gzip stream")])
        data = inflater.unused_data
        if not data:
            return bytes(out)
