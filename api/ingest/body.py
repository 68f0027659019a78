"""Read a request body under a byte cap, inflating gzip with a cap on the decompressed size (gzip bombs)."""

from __future__ import annotations

import zlib

from starlette.types import Receive

from api.errors import ApiError


async def read_body(
    receive: Receive, content_length: str | None, content_encoding: str | None, max_bytes: int
) -> bytes:
    """The request body from ASGI `http.request` messages, refused early when it is too large."""
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes:
        raise ApiError(413, "payload_too_large", [("body", f"larger than {max_bytes} bytes")])
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body = message.get("body", b"")  # the common case: the whole body in one message
        if len(body) > max_bytes:
            raise ApiError(413, "payload_too_large", [("body", f"larger than {max_bytes} bytes")])
    else:
        chunks, size = [], 0
        while True:
            if message["type"] != "http.request":  # http.disconnect
                raise ApiError(
                    400, "client_disconnected", [("body", "connection closed before the body was read")]
                )
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                raise ApiError(413, "payload_too_large", [("body", f"larger than {max_bytes} bytes")])
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
            message = await receive()
        body = b"".join(chunks)
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise ApiError(415, "unsupported_encoding", [("Content-Encoding", "only gzip is accepted")])
    return gunzip(body, max_bytes)


def gunzip(body: bytes, max_bytes: int) -> bytes:
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
