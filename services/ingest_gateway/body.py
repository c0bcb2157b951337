"""Reading a request body within limits: size (413), media type (415), gzip (bombs refused)."""

from __future__ import annotations

import zlib

from starlette.requests import Request

from shared.http import ApiError, body_too_large, read_json


async def read_body(request: Request, limit: int) -> bytes:
    """The decoded JSON body, never more than ``limit`` bytes before or after decompression."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise ApiError(415, "Content-Encoding must be gzip or identity", value=encoding)
    raw = await read_json(request, limit)
    if encoding == "gzip":
        return _gunzip(raw, limit)
    return raw


def _gunzip(raw: bytes, limit: int) -> bytes:
    decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decoder.decompress(raw, limit + 1)
    except zlib.error as e:
        raise ApiError(400, "Body is not valid gzip", detail=str(e)) from e
    if len(out) > limit or decoder.unconsumed_tail:
        raise body_too_large(limit)
    if not decoder.eof:
        raise ApiError(400, "Body is not valid gzip", detail="truncated stream")
    return out
