"""What the sync and asyncio transports share: the server check made on first use, and the
translation of the server's refusals (wrong key types, ACL denials) into redisq's errors."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import redis.exceptions
from redis.exceptions import ClusterError, NoPermissionError, ResponseError

from redisq._core.calls import Call
from redisq._core.scripts import ScriptSpec
from redisq.errors import CommandDenied, ConfigurationError, WrongKeyType

__all__ = [
    "UNREACHABLE",
    "ServerConfigWarning",
    "check_reply_error",
    "command_error",
    "connect_error",
    "is_denied",
    "judge_server",
    "script_error",
]

MIN_SERVER = (6, 2)
#: What a node that cannot answer now raises (redis-py's errors; ClusterDownError is one).
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ClusterError)

_log = logging.getLogger("redisq.store")


class ServerConfigWarning(UserWarning):
    """Warned when the server is set up in a way that can lose or corrupt queue data, or when
    redisq could not check that (the Redis user may not run INFO)."""


# ----------------------------------------------------------------------------- server check


def _version(info: dict[str, Any]) -> tuple[int, ...]:
    raw = str(info.get("redis_version") or info.get("valkey_version") or "0")
    parts = []
    for piece in raw.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def judge_server(
    infos: Sequence[dict[str, Any] | ResponseError], unreachable: Sequence[str] = ()
) -> None:
    """Judge what the check on first use gathered: per primary that answered, the merged reply
    of INFO server and INFO memory, or the server's refusal of INFO.

    Servers older than 6.2 are refused. A maxmemory-policy other than noeviction warns (once,
    naming every policy seen). A refused INFO (an ACL user without `+info`, a renamed command)
    warns that the check could not run, and the store goes on. Primaries of a cluster that did
    not answer are skipped, and logged: the others stand for the cluster, and checking them
    later would put a connection to a dead node on some later call's path.

    Raises:
        ConfigurationError: the server is older than 6.2.
    """
    answers = [info for info in infos if not isinstance(info, ResponseError)]
    for info in answers:
        if _version(info) < MIN_SERVER:
            raise ConfigurationError(
                f"redisq needs Redis or Valkey {MIN_SERVER[0]}.{MIN_SERVER[1]} or newer; the"
                f" server reports {info.get('redis_version')}"
            )
    refused = [info for info in infos if isinstance(info, ResponseError)]
    if refused:
        warnings.warn(
            "redisq could not check the server's version and maxmemory-policy: the server"
            f" refused INFO ({refused[0]}); grant the Redis user `+info` (docs/security.md), or"
            " pass check_server=False to redisq.connect() to skip the check",
            ServerConfigWarning,
            stacklevel=_caller_level(),
        )
    policies = sorted(
        {
            str(p)
            for info in answers
            if (p := info.get("maxmemory_policy")) not in (None, "noeviction")
        }
    )
    if policies:
        shown = " and ".join(repr(p) for p in policies)
        warnings.warn(
            f"the server's maxmemory-policy is {shown}: under memory pressure it may evict"
            " queue keys and lose jobs; set `maxmemory-policy noeviction` for queue data",
            ServerConfigWarning,
            stacklevel=_caller_level(),
        )
    if unreachable:
        _log.info(
            "server check: skipped the cluster primaries that did not answer (%s); the"
            " others were checked",
            ", ".join(unreachable),
        )


def _caller_level() -> int:
    """Find the stacklevel of the first frame outside redisq, so warnings name user code."""
    frame = sys._getframe(1)  # the function that calls warnings.warn: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("redisq"):
        frame = frame.f_back
        level += 1
    return level


# ---------------------------------------------------------------------------------- refusals

#: Texts of the server's ACL refusals: NOPERM replies to plain commands, and the errors of a
#: script whose redis.call was refused (Redis 7.0: "The user executing the script can't ...";
#: Redis 7.2 and Valkey: "ACL failure in script: ...").
_DENIED = ("NOPERM", "ACL failure", "executing the script can't", "no permissions to")
_IN_SCRIPT = ("ACL failure in script", "executing the script can't")
_NAMED_COMMAND = re.compile(r"run the '([^']+)' command")
_NAMED_KEY = re.compile(r"access the '([^']*)' key")
_KEYS_REFUSED = re.compile(r"access (?:a key|one of the keys|at least one of the keys|the ')")
_SCRIPT_LINE = re.compile(r"@user_script:(\d+)")
_CALL = re.compile(r"\b(?:rcall|redis\.p?call)\(\s*'([A-Za-z]+)'|\bchunks\(\s*\{\s*'([A-Za-z]+)'")
#: Commands ACL rules name with their subcommand (``client|id``).
_CONTAINERS = frozenset(
    {"ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "MEMORY", "OBJECT", "SCRIPT"}
)
#: Plain commands whose keys are all the arguments between the name and the timeout.
_BLOCKING_POPS = frozenset({"BZPOPMIN", "BZPOPMAX", "BLPOP", "BRPOP"})
_NO_KEYS = frozenset({"INFO", "PING", "TIME", "ECHO"}) | _CONTAINERS


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _command_name(args: Sequence[Any]) -> str:
    head = _text(args[0]).upper()
    if head in _CONTAINERS and len(args) > 1:
        return f"{head}|{_text(args[1]).upper()}".lower()
    return head.lower()


def _command_keys(args: Sequence[Any]) -> list[str]:
    head = _text(args[0]).upper()
    if head in _NO_KEYS:
        return []
    if head in _BLOCKING_POPS:
        return [_text(a) for a in args[1:-1]]
    return [_text(a) for a in args[1:2]]


def is_denied(error: BaseException) -> bool:
    """Tell whether a server error is an ACL refusal."""
    if isinstance(error, NoPermissionError):
        return True
    text = str(error)
    return isinstance(error, ResponseError) and any(mark in text for mark in _DENIED)


def _denied(
    error: ResponseError,
    *,
    command: str | None,
    keys: Sequence[str],
    spec: ScriptSpec | None = None,
) -> CommandDenied:
    """Build the CommandDenied of an ACL refusal.

    `command` is what the client sent (the plain command, or ``evalsha`` for a script call);
    a command the server names wins. Inside a script, a server that does not name the command
    (Redis 7.0) still gives the script line, whose call names it.
    """
    text = str(error)
    named = _NAMED_COMMAND.search(text)
    named_key = _NAMED_KEY.search(text)
    keys_refused = _KEYS_REFUSED.search(text) is not None
    in_script = spec is not None and any(mark in text for mark in _IN_SCRIPT)
    refused = named.group(1).lower() if named else None
    candidates: tuple[str, ...] = ()
    if in_script and spec is not None:
        if refused is None:
            refused = _command_at(spec.source, text)
        if refused is None and not keys_refused:
            candidates = _script_commands(spec.source)
    elif refused is None:
        refused = command
    key = named_key.group(1) if named_key else None
    if key is None and keys_refused and len(keys) == 1 and not in_script:
        key = keys[0]
    return CommandDenied(
        refused,
        key=key,
        keys_refused=keys_refused,
        script=spec.name if in_script and spec is not None else None,
        reason=text,
        near_key=keys[0] if keys and key is None else None,
        candidates=candidates,
    )


def _command_at(source: str, text: str) -> str | None:
    """The command a script line calls, from the line an error names (None if unnamed)."""
    where = _SCRIPT_LINE.search(text)
    if where is None:
        return None
    lines = source.splitlines()
    number = int(where.group(1))
    if not 1 <= number <= len(lines):
        return None
    found = _CALL.search(lines[number - 1])
    if found is None:
        return None
    return (found.group(1) or found.group(2)).lower()


@lru_cache(maxsize=64)
def _script_commands(source: str) -> tuple[str, ...]:
    """The commands a script calls, by name, sorted (for a refusal the server does not name)."""
    return tuple(sorted({(a or b).lower() for a, b in _CALL.findall(source)}))


def command_error(args: Sequence[Any], error: ResponseError) -> Exception:
    """Turn a refusal of a plain command into redisq's error: WrongKeyType naming its key for
    WRONGTYPE, CommandDenied for an ACL refusal; other errors pass through."""
    if is_denied(error):
        return _denied(error, command=_command_name(args), keys=_command_keys(args))
    if str(error).startswith("WRONGTYPE") and len(args) > 1:
        return WrongKeyType(_text(args[1]), "value of another type")
    return error


def script_error(spec: ScriptSpec, keys: Sequence[str], error: ResponseError) -> Exception:
    """Turn an ACL refusal of a script call (EVALSHA or SCRIPT LOAD refused, or a command
    inside the script) into CommandDenied; other errors pass through."""
    if is_denied(error):
        return _denied(error, command="evalsha", keys=[_text(k) for k in keys], spec=spec)
    return error


def connect_error(error: BaseException) -> CommandDenied | None:
    """Find an ACL refusal behind an error of a cluster client that connects (it asks for the
    topology with CLUSTER SLOTS, and for the command table with COMMAND); None if there is
    none. redis-py reports a refused CLUSTER SLOTS as "Cluster mode is not enabled"."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ResponseError) and is_denied(current):
            return _denied(current, command=None, keys=())
        current = current.__cause__ or current.__context__
    return None


def check_reply_error(call: Call[Any], reply: Any) -> Any:
    """Raise a pipelined reply that is an error; pass any other reply through."""
    if isinstance(reply, ResponseError):
        if call.spec is None:
            raise command_error(call.args, reply)
        raise script_error(call.spec, call.keys, reply)
    return reply
