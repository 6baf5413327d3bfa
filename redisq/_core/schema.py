"""The data layout version, mirrored from lua/lib/schema.lua (a test checks parity)."""

from __future__ import annotations

#: Bump when the meaning of a key or field changes; scripts refuse queues of another version.
SCHEMA_VERSION = 3
