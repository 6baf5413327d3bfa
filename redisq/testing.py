"""Helpers for the tests of redisq's users.

`memory://name` stores share one in-process server per name for the life of the process; in
a test suite, give each test its own name and forget it afterwards::

    url = f"memory://{request.node.name}"
    store = redisq.connect(url)
    ...
    redisq.testing.forget_memory(url)
"""

from __future__ import annotations

from redisq._connect import forget_memory

__all__ = ["forget_memory"]
