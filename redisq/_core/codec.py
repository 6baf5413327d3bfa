"""msgpack encoding of payloads, results and progress: no pickle, ever.

Payloads are opaque bytes to the scripts; only Python encodes and decodes them.
"""

from __future__ import annotations

import threading
from itertools import chain, compress
from typing import Any

import msgpack

from redisq.errors import PayloadTooLarge, SerializationError

__all__ = [
    "DEFAULT_PAYLOAD_LIMIT",
    "decode",
    "encode",
    "oversize",
    "oversize_levels",
    "round_trip",
    "round_trip_many",
]

#: 512 KiB, the default limit for an encoded payload, result or progress value.
DEFAULT_PAYLOAD_LIMIT = 512 * 1024

_packer_options: dict[str, Any] = {"use_bin_type": True}


#: msgpack's nesting limit (DEFAULT_RECURSE_LIMIT): deeper values are refused by packb.
_MAX_DEPTH = 511
_SCALAR_TYPES = frozenset({int, float, bool, type(None)})
_BLOB_TYPES = frozenset({str, bytes, bytearray})
_CONTAINER_TYPES = frozenset({list, dict, tuple})
_values = dict.values


def oversize(value: Any, limit: int) -> int:
    """Tell cheaply whether `value` must encode to more than `limit` bytes.

    Walks the value adding a lower bound of each part's encoding (a byte per item, the
    length of each str or binary) and stops as soon as the sum passes `limit`: a value of any
    size costs at most about `limit` items of walking (every item visited adds one), where
    msgpack would encode all of it. Parts nested deeper than msgpack allows are not walked
    (packb refuses them; a cyclic value ends there). Only the built-in types are looked into
    (no code of the caller's classes runs here); anything else counts as one item. Returns
    the sum once it passes `limit`, else 0.
    """
    kind = type(value)
    if kind in _BLOB_TYPES:
        return len(value) if len(value) > limit else 0
    if kind is memoryview:
        return value.nbytes if value.nbytes > limit else 0
    if kind is not list and kind is not dict and kind is not tuple:
        return 0
    size = 1
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            continue  # msgpack refuses this nesting; the rest may still be too large
        parts = (node, node.values()) if type(node) is dict else (node,)
        for part in parts:
            size += len(part)
            if size > limit:
                return size
            if len(part) > 16:
                # Most long containers hold one kind of item: judge those at C speed.
                kinds = set(map(type, part))
                if kinds <= _SCALAR_TYPES:
                    continue
                if kinds <= _BLOB_TYPES:
                    size += sum(map(len, part))
                    continue
            for child in part:
                kind = type(child)
                if kind in _SCALAR_TYPES:
                    continue
                if kind in _BLOB_TYPES:
                    size += len(child)
                elif kind is list or kind is dict or kind is tuple:
                    stack.append((child, depth + 1))
                elif kind is memoryview:
                    size += child.nbytes
        if size > limit:
            return size
    return 0


def oversize_levels(value: Any, limit: int) -> int:
    """Tell cheaply whether `value` must encode to more than `limit` bytes: as `oversize`,
    by another walk, faster on many small parts (a batch of payloads), slower on one.

    The walk goes one nesting level at a time, each level at C speed (map, chain, compress),
    so a batch of small payloads (a list of them) costs about as much as encoding it. A
    level's items are counted before they are gathered, so no level gathers more than
    `limit` items.
    """
    kind = type(value)
    if kind in _BLOB_TYPES:
        return len(value) if len(value) > limit else 0
    if kind is memoryview:
        return value.nbytes if value.nbytes > limit else 0
    if kind not in _CONTAINER_TYPES:
        return 0
    size = 0
    level = [value]
    for _ in range(_MAX_DEPTH):
        dicts = [node for node in level if type(node) is dict]
        # Every item of a container counts one; a dict's keys and values both.
        size += sum(map(len, level)) + sum(map(len, dicts))
        if size > limit:
            return size
        items = list(chain(chain.from_iterable(level), chain.from_iterable(map(_values, dicts))))
        kinds = list(map(type, items))
        size += sum(map(len, compress(items, map(_BLOB_TYPES.__contains__, kinds))))
        if memoryview in kinds:
            size += sum(m.nbytes for m, k in zip(items, kinds, strict=True) if k is memoryview)
        if size > limit:
            return size
        level = list(compress(items, map(_CONTAINER_TYPES.__contains__, kinds)))
        if not level:
            break
    return 0


_local = threading.local()


def _packer() -> msgpack.Packer:
    """This thread's msgpack packer (packb would build a new one for every value)."""
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(**_packer_options)
    return packer


def encode(field: str, value: Any, limit: int, job_id: str | None = None) -> bytes:
    """Encode `value` as msgpack, refusing what msgpack cannot hold and what is too large.

    Raises:
        SerializationError: the value holds a type msgpack cannot encode, a str that is not
            valid Unicode, or nesting deeper than msgpack's limit (511 levels).
        PayloadTooLarge: the encoded value is larger than `limit` bytes (for a value far
            larger, `size` is a lower bound: it is refused before it is encoded).
    """
    # A value too large is refused before it is copied into an encoding (see oversize).
    over = oversize(value, limit)
    if over:
        raise PayloadTooLarge(field, over, limit)
    try:
        data: bytes = _packer().pack(value)
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


def round_trip_many(values: list[Any], limit: int) -> tuple[list[bytes], list[Any]] | None:
    """Encode and decode many values as `round_trip` does each, or None if any is refused.

    The fast way for a batch: one size walk over all of them (when their sum is within
    `limit`, so is each one; a part at msgpack's deepest nesting in a value is one level
    too deep in the list to be walked, so such a value may be encoded before it is
    refused: the same error, later), one packer, and one decode of all the encodings at once (as
    one msgpack array, which holds exactly the items' own bytes). None means some value is
    too large, cannot be encoded, or would not read back: `round_trip` on each, in order,
    then raises the error of the first one refused.
    """
    if not values:
        return [], []
    if len(values) == 1:
        if oversize(values[0], limit):
            return None
    elif oversize_levels(values, limit):
        # Their sum passes the limit: look at each.
        for value in values:
            if oversize(value, limit):
                return None
    packer = msgpack.Packer(**_packer_options)
    pack = packer.pack
    try:
        data = [pack(value) for value in values]
    except (TypeError, ValueError, OverflowError, UnicodeError):
        return None
    if max(map(len, data)) > limit:
        return None
    try:
        decoded = msgpack.unpackb(
            packer.pack_array_header(len(data)) + b"".join(data),
            raw=False,
            strict_map_key=False,
        )
    except (TypeError, ValueError):
        return None
    return data, decoded
