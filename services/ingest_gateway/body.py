"""Reading a request body within limits: size (413), media type (415), gzip (bombs refused)."""

from __future__ import annotations

import zlib

from starlette.requests import Request

from shared.http import ApiError


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request body exceeds {limit} bytes", max_body_bytes=limit)


def check_media_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(415, "Content-Type must be application/json", value=media_type or None)


async def read_body(request: Request, limit: int) -> bytes:
    """The decoded body, never more than ``limit`` bytes before or after decompression."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise ApiError(415, "Content-Encoding must be gzip or identity", value=encoding)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
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
        raise too_large(limit)
    if not decoder.eof:
        raise ApiError(400, "Body is not valid gzip", detail="truncated stream")
    return out
