"""Deliberately broken copies of the scripts, to prove that the checker catches real defects.

Each sabotage replaces one piece of text in the loaded scripts (after includes are inlined)
and gives the patched copy its own SHA, so the store loads it through its NOSCRIPT fallback.
Nothing in ``lua/`` or ``redisq/`` changes: the patch lives in the process that applies it
(a test, or a chaos worker started with ``sabotage`` in its config).

    with sabotaged("ack-no-fence"):
        ...   # every store of this process now runs an ack that ignores the token

A sabotage whose text is no longer in the scripts raises `SabotageMissing`: the proof must be
updated with the scripts, never pass vacuously.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

from redisq._core.scripts import load_all

__all__ = ["SABOTAGES", "Sabotage", "SabotageMissing", "apply", "restore", "sabotaged"]


class SabotageMissing(LookupError):
    """Raised when the text a sabotage replaces is not in the scripts any more."""


@dataclass(frozen=True)
class Sabotage:
    """One broken behaviour: in every script holding `old`, replace it by `new`."""

    name: str
    what: str
    old: str
    new: str
    #: The scripts that must hold `old` (others may too; all are patched).
    scripts: tuple[str, ...]


SABOTAGES = {
    s.name: s
    for s in (
        Sabotage(
            "ack-no-fence",
            "ack completes a job whatever the token and deadline (fencing broken)",
            "local refusal = lease_check_fields(state, held, ended, deadline, token, now, 'ack',"
            " i)",
            "local refusal = nil",
            ("ack",),
        ),
        Sabotage(
            "renew-no-fence",
            "renew extends a lease whatever the token and deadline (fencing broken)",
            "refusal = lease_check_fields(state, held, ended, deadline, ARGV[b + 1], now,"
            " 'renew', i)",
            "refusal = nil",
            ("renew",),
        ),
        Sabotage(
            "reap-early",
            "the reaper takes leases an hour before they expire (reaper broken)",
            "redis.pcall('ZRANGEBYSCORE', keys.leased, '-inf', num(now), 'LIMIT', 0, limit)",
            "redis.pcall('ZRANGEBYSCORE', keys.leased, '-inf', num(now + 3600000), 'LIMIT', 0,"
            " limit)",
            ("claim", "reap"),
        ),
        Sabotage(
            "reaper-off",
            "expired leases are never returned (reaper broken)",
            "redis.pcall('ZRANGEBYSCORE', keys.leased, '-inf', num(now), 'LIMIT', 0, limit)",
            "redis.pcall('ZRANGEBYSCORE', keys.leased, '-inf', '(-inf', 'LIMIT', 0, limit)",
            ("claim", "reap"),
        ),
        Sabotage(
            "claim-keeps-ready",
            "claim leases jobs without taking them out of the ready set (claim broken)",
            "redis.call('ZREMRANGEBYRANK', ready_key, 0, #ids - 1)",
            "-- (sabotaged: the leased jobs stay ready)",
            ("claim",),
        ),
        Sabotage(
            "claim-same-token",
            "claim never advances the token counter, so tokens repeat (claim broken)",
            "redis.call('HINCRBY', meta_key, 'token', leased)",
            "-- (sabotaged: the token counter stays)",
            ("claim",),
        ),
        Sabotage(
            "deps-release-early",
            "a waiting child is released when its first parent completes (dependencies broken)",
            "  if #left > 0 then\n    redis.call('HSET', dk.deps, child,",
            "  if #left > 0 and false then\n    redis.call('HSET', dk.deps, child,",
            ("ack", "deps_deliver"),
        ),
        Sabotage(
            "deps-deliver-lost",
            "a release for another queue is removed from the outbox undelivered (release lost)",
            "local r = deps_apply(dk, child, ref, outcome, now)",
            "local r = 'gone'",
            ("deps_deliver",),
        ),
    )
}


def apply(name: str) -> dict[str, str]:
    """Patch the loaded scripts of this process; return the original sources, by script.

    Raises:
        KeyError: no sabotage has that name.
        SabotageMissing: a script that must hold the text does not.
    """
    sabotage = SABOTAGES[name]
    specs = load_all()
    for script in sabotage.scripts:
        if sabotage.old not in specs[script].source:
            raise SabotageMissing(
                f"sabotage {name!r}: {script}.lua no longer contains {sabotage.old!r};"
                " update tests/chaos/sabotage.py with the scripts"
            )
    originals: dict[str, str] = {}
    for script, spec in list(specs.items()):
        if sabotage.old in spec.source:
            originals[script] = spec.source
            source = spec.source.replace(sabotage.old, sabotage.new)
            sha = hashlib.sha1(source.encode()).hexdigest()
            specs[script] = replace(spec, source=source, sha=sha)
    return originals


def restore(originals: dict[str, str]) -> None:
    """Undo `apply`, given what it returned."""
    specs = load_all()
    for script, source in originals.items():
        sha = hashlib.sha1(source.encode()).hexdigest()
        specs[script] = replace(specs[script], source=source, sha=sha)


@contextlib.contextmanager
def sabotaged(name: str) -> Iterator[Sabotage]:
    """Run the block with the named sabotage applied in this process."""
    originals = apply(name)
    try:
        yield SABOTAGES[name]
    finally:
        restore(originals)
