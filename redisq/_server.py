"""What the sync and asyncio transports share: the server checks made on first use."""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from redisq._core.calls import Call
from redisq.errors import ConfigurationError, WrongKeyType

if TYPE_CHECKING:
    pass

__all__ = ["ServerConfigWarning", "check_reply_error", "check_server_info", "command_error"]

MIN_SERVER = (6, 2)


class ServerConfigWarning(UserWarning):
    """Warned when the server is set up in a way that can lose or corrupt queue data."""


def _version(info: dict[str, Any]) -> tuple[int, ...]:
    raw = str(info.get("redis_version") or info.get("valkey_version") or "0")
    parts = []
    for piece in raw.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_server_info(info: dict[str, Any]) -> None:
    """Refuse servers older than 6.2 and warn when eviction can drop queue data.

    `info` is the merged reply of INFO server and INFO memory.
    """
    version = _version(info)
    if version < MIN_SERVER:
        raise ConfigurationError(
            f"redisq needs Redis or Valkey {MIN_SERVER[0]}.{MIN_SERVER[1]} or newer; the server"
            f" reports {info.get('redis_version')}"
        )
    policy = info.get("maxmemory_policy")
    if policy is not None and policy != "noeviction":
        warnings.warn(
            f"the server's maxmemory-policy is {policy!r}: under memory pressure it may evict"
            " queue keys and lose jobs; set `maxmemory-policy noeviction` for queue data",
            ServerConfigWarning,
            stacklevel=_caller_level(),
        )


def _caller_level() -> int:
    """Find the stacklevel of the first frame outside redisq, so warnings name user code."""
    frame = sys._getframe(1)  # the function that calls warnings.warn: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("redisq"):
        frame = frame.f_back
        level += 1
    return level


def command_error(args: list[Any], error: ResponseError) -> Exception:
    """Turn a WRONGTYPE refusal of a plain command into WrongKeyType naming its key."""
    if str(error).startswith("WRONGTYPE") and len(args) > 1:
        key = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
        return WrongKeyType(key, "value of another type")
    return error


def check_reply_error(call: Call[Any], reply: Any) -> Any:
    """Raise a pipelined reply that is an error; pass any other reply through."""
    if isinstance(reply, ResponseError):
        raise command_error(call.args, reply) if call.spec is None else reply
    return reply
