"""msgpack encoding of payloads, results and progress: no pickle, ever.

Payloads are opaque bytes to the scripts; only Python encodes and decodes them.
"""

from __future__ import annotations

from typing import Any

import msgpack

from redisq.errors import PayloadTooLarge, SerializationError

__all__ = ["DEFAULT_PAYLOAD_LIMIT", "decode", "encode", "round_trip"]

#: 512 KiB, the default limit for an encoded payload, result or progress value.
DEFAULT_PAYLOAD_LIMIT = 512 * 1024

_packer_options: dict[str, Any] = {"use_bin_type": True}


def encode(field: str, value: Any, limit: int, job_id: str | None = None) -> bytes:
    """Encode `value` as msgpack, refusing what msgpack cannot hold and what is too large.

    Raises:
        SerializationError: the value holds a type msgpack cannot encode, a str that is not
            valid Unicode, or nesting deeper than msgpack's limit (511 levels).
        PayloadTooLarge: the encoded value is larger than `limit` bytes.
    """
    # A huge str or bytes is refused before it is copied into an encoding.
    if isinstance(value, (bytes, bytearray, memoryview, str)) and len(value) > limit:
        raise PayloadTooLarge(field, len(value), limit)
    try:
        data: bytes = msgpack.packb(value, **_packer_options)
    except (TypeError, ValueError, OverflowError, UnicodeError) as exc:
        raise SerializationError(field, str(exc) or type(exc).__name__, job_id) from exc
    if len(data) > limit:
        raise PayloadTooLarge(field, len(data), limit)
    return data


def decode(data: bytes) -> Any:
    """Decode msgpack bytes stored by `encode`."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def round_trip(field: str, value: Any, limit: int, job_id: str | None = None) -> tuple[bytes, Any]:
    """Encode `value` and decode it again: the bytes to store and the value readers will get.

    A value msgpack can write but not read back (a dict keyed by tuples: they come back as
    lists, which cannot be keys) is refused here, before it could break every later read.
    """
    data = encode(field, value, limit, job_id)
    try:
        return data, decode(data)
    except (TypeError, ValueError) as exc:
        raise SerializationError(field, f"it would not read back: {exc}", job_id) from exc
