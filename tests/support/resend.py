"""Client retries made on purpose, for the tests that prove a transition safe under one.

A proxy in front of a real server holds back one script reply past the client's socket
timeout: redis-py reconnects and sends the script again, so the server runs it twice. The
fixtures `proxy`, `direct` and `twice` (tests/integration/conftest.py) build on these.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tests.support.proxy import TcpProxy

#: The stores' socket timeout: short enough to keep each case fast, long enough for a
#: loopback reply under load.
SOCKET_TIMEOUT = 0.2
#: How long the proxy holds the one late reply: well past the socket timeout.
LATE_REPLY = 1.0


def evalsha_calls(direct: redis.Redis) -> int:
    """EVALSHA calls the server has run (each script run once counts once)."""
    stats = direct.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


@contextmanager
def ran_twice(proxy: TcpProxy, direct: redis.Redis, scripts: int = 1) -> Iterator[None]:
    """``with ran_twice(proxy, direct): store.op(...)``: the op's first script runs twice.

    Asserts afterwards that the retry really happened: EVALSHA ran exactly once more than the
    op has script calls (`scripts`), and the client opened a new connection to retry.
    """
    calls, accepted = evalsha_calls(direct), proxy.accepted
    proxy.delay_next_reply(LATE_REPLY)
    yield
    assert evalsha_calls(direct) - calls == scripts + 1, "no script ran twice"
    assert proxy.accepted - accepted >= 1, "the client did not reconnect to retry"
