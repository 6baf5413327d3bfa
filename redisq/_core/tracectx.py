"""The optional trace context of a job record (W3C Trace Context; docs/tracing.md).

A job enqueued with a trace context stores it in front of its payload, in the payload blob of
its record (lib/record): the byte 0xC1, which msgpack never uses (so no payload starts with
it), two bytes of length (big-endian), then that many bytes of ASCII text: the traceparent,
followed by a newline and the tracestate when there is one. A job without one stores its
payload as before: nothing extra, and every record written before reads the same. The scripts
never look into payloads, so none of them changes.

The carrier is what OpenTelemetry's W3C propagator writes and reads: a dict with
"traceparent" and optionally "tracestate". Both are checked (a hostile or oversized value is
refused with `InvalidArgument` at enqueue, and a stored one that does not parse reads as no
trace context), and bounded: at most `MAX_TRACE_BYTES` in all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from redisq.errors import InvalidArgument

__all__ = [
    "MARK",
    "MAX_TRACESTATE_LENGTH",
    "MAX_TRACE_BYTES",
    "carrier",
    "check_trace_context",
    "pack_trace",
    "split_trace",
]

#: The first byte of a payload blob that carries a trace context (never a msgpack byte).
MARK = 0xC1
#: The W3C limit a propagator keeps a tracestate within (32 list members, 512 characters).
MAX_TRACESTATE_LENGTH = 512
#: The traceparent (55), the newline and the tracestate.
MAX_TRACE_BYTES = 55 + 1 + MAX_TRACESTATE_LENGTH
#: Version 00 of the W3C traceparent: version-trace_id-parent_id-flags, lowercase hex.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
#: The tracestate's characters: printable ASCII (its list members are checked by OTel).
_TRACESTATE = re.compile(r"[\x20-\x7e]*")
#: Stored trace contexts already checked (text -> carrier), cleared when full.
_SEEN: dict[bytes, dict[str, str]] = {}
_SEEN_SIZE = 256
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def _valid_traceparent(value: Any) -> bool:
    return (
        type(value) is str
        and len(value) == 55
        and _TRACEPARENT.fullmatch(value) is not None
        and not value.startswith("ff")
        and value[3:35] != _ZERO_TRACE
        and value[36:52] != _ZERO_SPAN
    )


def check_trace_context(field: str, value: Any) -> str:
    """Validate a trace context carrier; return its stored text ("" for None or an empty one).

    Raises:
        InvalidArgument: not a mapping of "traceparent" (a valid W3C version-00 traceparent)
            and optionally "tracestate" (printable ASCII, at most 512 characters).
    """
    if value is None:
        return ""
    if not isinstance(value, Mapping):
        raise InvalidArgument(
            field, 'a dict {"traceparent": ..., "tracestate": ...} (W3C Trace Context)', value
        )
    if not value:
        return ""
    unknown = set(value) - {"traceparent", "tracestate"}
    if unknown:
        raise InvalidArgument(
            f"{field}.{sorted(map(str, unknown))[0]}",
            'absent: only "traceparent" and "tracestate" are kept',
            value,
        )
    parent = value.get("traceparent")
    if not _valid_traceparent(parent):
        raise InvalidArgument(
            f"{field}.traceparent",
            "a W3C traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"
            " (55 characters, lowercase, ids not all zero)",
            parent,
        )
    state = value.get("tracestate")
    if state is None or state == "":
        return str(parent)
    if (
        type(state) is not str
        or len(state) > MAX_TRACESTATE_LENGTH
        or _TRACESTATE.fullmatch(state) is None
    ):
        raise InvalidArgument(
            f"{field}.tracestate",
            f"printable ASCII text of at most {MAX_TRACESTATE_LENGTH} characters",
            state,
        )
    return f"{parent}\n{state}"


def carrier(text: str) -> dict[str, str]:
    """The carrier dict of a stored trace context text (from check_trace_context)."""
    parent, _, state = text.partition("\n")
    return {"traceparent": parent, "tracestate": state} if state else {"traceparent": parent}


def pack_trace(text: str, payload: bytes) -> bytes:
    """The payload blob of a job with the trace context `text` (from check_trace_context)."""
    if not text:
        return payload
    data = text.encode("ascii")
    return bytes((MARK, len(data) >> 8, len(data) & 0xFF)) + data + payload


def split_trace(blob: bytes) -> tuple[dict[str, str] | None, bytes] | None:
    """Split a payload blob that starts with MARK into (carrier, msgpack payload).

    The carrier is None when the stored text is not a valid trace context (it is ignored,
    never trusted). Returns None when the blob does not start with MARK or its length does
    not fit (the caller then reports the payload as undecodable, as before).
    """
    if len(blob) < 3 or blob[0] != MARK:
        return None
    n = (blob[1] << 8) | blob[2]
    if n > MAX_TRACE_BYTES or 3 + n > len(blob):
        return None
    raw = blob[3 : 3 + n]
    known = _SEEN.get(raw)
    if known is not None:  # the jobs of one enqueue_many share their context
        return dict(known), blob[3 + n :]
    try:
        found = carrier(raw.decode("ascii"))
        check_trace_context("trace_context", found)
    except (UnicodeDecodeError, InvalidArgument):
        return None, blob[3 + n :]
    if len(_SEEN) >= _SEEN_SIZE:
        _SEEN.clear()
    _SEEN[raw] = found
    return dict(found), blob[3 + n :]
