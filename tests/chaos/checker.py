"""The checker: invariants I1-I9 (reliability plan, section 4.3) over a ledger and the final state.

Inputs are plain data, so the checker is tested on hand-made ledgers as well as real runs:
the ledger's events (`tests.chaos.ledger`), the final Redis state (`FinalState`, read after
the workers stopped) and the scenario's `Limits`.

Leases are rebuilt from the ledger: a CLAIM line opens one, named by (queue, id, token,
granted); RENEW_OK lines move its deadline; ACK_OK, NACK_OK and RELEASE_OK end it, at the Redis
time their reply carries (``at``; where a reply tells none, the checker only uses bounds: the
``*_SENT`` line before it and the reply's own wall time, which is the clock Redis reads on this
one host). Then:

- I1 no loss: every job whose enqueue returned is completed or dead at the end.
- I2 one completion: acks of one job come from one lease, with one completion time; the
  completed record holds that lease's token; no lease is granted after a completion.
- I3 no overlapping valid leases: for consecutive leases of a job, the later one is granted
  no earlier than the earlier one ended (its last deadline, or its recorded end).
- I4 fencing: no transition was accepted after its lease ended or was superseded; tokens
  grow with each lease of a job; each SIGSTOP that outlived a held lease is followed by a
  refusal from that worker (else the run did not exercise fencing).
- I5 no leftovers: nothing ready, scheduled or leased; no key but the queue's own (claim
  memos only with a TTL).
- I6 attempts bounded: attempts <= max_attempts; poison jobs dead after max_attempts with
  their error kept, never completed.
- I7 recovery: a lease that expired is granted again within the reaper interval (+20%
  jitter) plus a slack; time when every live worker had all its slots busy, an outage that
  overlaps the wait and the workers' reconnection after it are not counted.
- I8 duplicates explained: a job run again after a lease that did not end by nack or release
  shows that lease's loss in the ledger (its process died or was stopped, or it got a
  refusal); each such re-run is put down to the fault that caused it.
- I9 memory: used_memory after the drain, less what the records kept on purpose take, is
  within a bound of the baseline.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from .ledger import Event, LedgerData, read_ledger

__all__ = [
    "INVARIANTS",
    "FinalJob",
    "FinalState",
    "Lease",
    "Limits",
    "Report",
    "check",
    "dump_final",
    "load_final",
    "recheck",
    "save_run",
]

INVARIANTS = ("I1", "I2", "I3", "I4", "I5", "I6", "I7", "I8", "I9")
#: Wall clock vs Redis TIME (ms): one host, one clock; Redis truncates to whole ms.
CLOCK_MS = 2.0
#: Keys a queue may keep after a drain (the parts of `redisq.keys.QueueKeys`).
KEPT_PARTS = ("meta", "done", "dead", "jobs", "wake")

JobKey = tuple[str, str]


@dataclass
class FinalJob:
    """One job as Redis holds it after the run."""

    state: str
    attempts: int
    max_attempts: int
    token: int | None
    last_error: str | None
    finished_at: int | None = None


@dataclass
class FinalState:
    """What Redis holds after the drain and the workers' stop."""

    jobs: dict[JobKey, FinalJob]
    #: Per queue: cardinality of its ready, scheduled and leased sets.
    sets: dict[str, dict[str, int]]
    #: Every key on the server: name -> (type, pttl in ms; -1 = none).
    keys: dict[str, tuple[str, int]]
    #: The names of the keys each queue may keep, and the registry key.
    allowed: set[str]
    #: Prefixes of keys that may stay only with a TTL (claim memos).
    expiring_prefixes: tuple[str, ...]
    used_memory: int
    baseline_memory: int
    #: MEMORY USAGE of the keys kept on purpose (job records, done and dead sets): the
    #: scenarios keep every record so that each job can be checked.
    retained_memory: int = 0


def dump_final(final: FinalState) -> dict[str, Any]:
    """`final` as JSON-ready data (saved next to the ledger, for re-checking a run)."""
    data = asdict(final)
    data["jobs"] = [[q, id_, asdict(job)] for (q, id_), job in final.jobs.items()]
    data["allowed"] = sorted(final.allowed)
    return data


def load_final(data: dict[str, Any]) -> FinalState:
    """The inverse of `dump_final`."""
    fields = dict(data)
    fields["jobs"] = {(q, id_): FinalJob(**job) for q, id_, job in data["jobs"]}
    fields["keys"] = {k: (v[0], int(v[1])) for k, v in data["keys"].items()}
    fields["allowed"] = set(data["allowed"])
    fields["expiring_prefixes"] = tuple(data["expiring_prefixes"])
    return FinalState(**fields)


@dataclass
class Limits:
    """What a scenario allows."""

    lease_ms: int
    reaper_ms: int
    max_attempts: int
    #: Added to the reaper interval in I7 (a claim's round trip, a busy machine).
    recovery_slack_ms: int = 500
    #: I9's bound on used_memory growth.
    memory_bytes: int = 10 << 20
    #: Check I4's "a refusal per SIGSTOP that outlived a held lease".
    stop_refusals: bool = True
    #: Check I5 and I9 (scenarios that leave jobs on purpose turn them off).
    leftovers: bool = True
    #: I7 allows this much more when the wait overlaps an outage: the workers' reconnection
    #: backoff (S8 checks that they resume within it).
    resume_after_outage_ms: int = 5_000
    #: Handler slots per worker process: I7 then does not count the time when every live,
    #: running worker had all its slots busy (no one could take the job back). None: count it.
    concurrency: int | None = None


@dataclass
class End:
    """A successful end of a lease (ack, nack, release)."""

    kind: str
    at: float | None
    t: float
    sent: float | None
    state: str
    replay: bool


@dataclass
class Lease:
    """One lease as the ledger tells it."""

    q: str
    id: str
    token: int
    granted: int
    #: The deadline the claim gave, and the latest one (after renewals).
    claim_deadline: int
    deadline: int
    attempt: int | None
    pid: int | None
    src: str | None
    claim_t: float | None
    renewals: list[tuple[int, int, float]] = field(default_factory=list)
    #: Renewals that failed without an answer (wall ms sent, wall ms failed): each may have
    #: gone through, extending the lease to at most (failed + lease).
    unsure_renewals: list[tuple[float, float]] = field(default_factory=list)
    ends: list[End] = field(default_factory=list)
    refusals: list[Event] = field(default_factory=list)
    #: ``*_SENT`` wall times of ends, by kind (the last one).
    sent: dict[str, float] = field(default_factory=dict)
    started: bool = False
    outcome: str | None = None
    #: Wall time of HANDLER_END (or CRASH): the worker's slot is free again.
    handler_end: float | None = None
    crashed: bool = False

    @property
    def name(self) -> str:
        where = f"{self.src} pid {self.pid}" if self.pid is not None else "unknown holder"
        return f"token {self.token} granted {self.granted} ({where})"

    def end_bound(self) -> tuple[float, str]:
        """The earliest the lease can have ended, and how it ended (for I3)."""
        end, how = float(self.deadline), f"deadline {self.deadline}"
        for e in self.ends:
            if e.replay:
                continue
            at = e.at if e.at is not None else e.sent
            if at is not None and at < end:
                end, how = at, f"{e.kind} at {at:.0f}"
        for kind, sent in self.sent.items():
            if sent < end and not any(e.kind == kind for e in self.ends):
                end, how = sent, f"{kind} sent at {sent:.0f}, answer never seen"
        return end, how

    def ended_by(self, *kinds: str) -> bool:
        return any(e.kind in kinds for e in self.ends)


@dataclass
class Report:
    """The checker's verdict: violations per invariant and the run's figures."""

    violations: dict[str, list[str]] = field(default_factory=lambda: {i: [] for i in INVARIANTS})
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no invariant was violated."""
        return not any(self.violations.values())

    def add(self, invariant: str, message: str) -> None:
        """Report a violation of `invariant` (I1-I9, or a scenario's own check, e.g. "S10")."""
        self.violations.setdefault(invariant, []).append(message)

    def failed(self) -> list[str]:
        """The invariants (and scenario checks) that failed."""
        return [i for i, found in self.violations.items() if found]

    def describe(self, limit: int = 10) -> str:
        """Every violation (at most `limit` per invariant), one per line."""
        lines: list[str] = []
        for invariant, found in self.violations.items():
            for message in found[:limit]:
                lines.append(f"{invariant}: {message}")
            if len(found) > limit:
                lines.append(f"{invariant}: ... and {len(found) - limit} more")
        return "\n".join(lines) or "no violations"


# ------------------------------------------------------------------------------ building


def _key(e: Event) -> JobKey:
    return str(e["q"]), str(e["id"])


class _Leases:
    """The leases of a run, from its ledger."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.by_job: dict[JobKey, list[Lease]] = defaultdict(list)
        self._by_name: dict[tuple[str, str, int, int], Lease] = {}
        self._by_token: dict[tuple[str, str, int], list[Lease]] = defaultdict(list)
        self.expired_claims: list[Lease] = []

    def claim(self, e: Event) -> None:
        name = (str(e["q"]), str(e["id"]), int(e["token"]), int(e["granted"]))
        lease = self._by_name.get(name)
        if lease is not None:
            return  # a re-sent claim answered from its memo: the same lease
        lease = Lease(
            q=name[0],
            id=name[1],
            token=name[2],
            granted=name[3],
            claim_deadline=int(e["deadline"]),
            deadline=int(e["deadline"]),
            attempt=e.get("attempt"),
            pid=e.get("pid"),
            src=e.get("src"),
            claim_t=float(e["t"]),
        )
        if float(e["t"]) > lease.deadline + CLOCK_MS:
            self.expired_claims.append(lease)
        self._by_name[name] = lease
        self._by_token[name[:3]].append(lease)
        self.by_job[name[:2]].append(lease)

    def find(self, e: Event) -> Lease:
        """The lease a transition line names (made up from the line if no CLAIM was seen)."""
        q, id_, token = str(e["q"]), str(e["id"]), int(e["token"] or 0)
        granted = e.get("granted")
        if granted is not None:
            lease = self._by_name.get((q, id_, token, int(granted)))
            if lease is not None:
                return lease
        else:
            candidates = self._by_token.get((q, id_, token))
            if candidates:
                return candidates[-1]
            granted = 0
        lease = Lease(
            q=q,
            id=id_,
            token=token,
            granted=int(granted),
            claim_deadline=int(granted) + self.limits.lease_ms,
            deadline=int(granted) + self.limits.lease_ms,
            attempt=None,
            pid=e.get("pid"),
            src=e.get("src"),
            claim_t=None,
        )
        self._by_name[(q, id_, token, int(granted))] = lease
        self._by_token[(q, id_, token)].append(lease)
        self.by_job[(q, id_)].append(lease)
        return lease

    def sort(self) -> None:
        for leases in self.by_job.values():
            leases.sort(key=lambda lease: (lease.granted, lease.token))


def _build(data: LedgerData, limits: Limits) -> _Leases:
    leases = _Leases(limits)
    for e in data.events:
        ev = e["ev"]
        if ev == "CLAIM":
            leases.claim(e)
        elif ev == "RENEW_OK":
            lease = leases.find(e)
            lease.renewals.append((int(e["at"]), int(e["deadline"]), float(e["t"])))
            lease.deadline = max(lease.deadline, int(e["deadline"]))
        elif ev in ("ACK_OK", "NACK_OK", "RELEASE_OK"):
            lease = leases.find(e)
            kind = ev.split("_")[0]
            replay = e.get("rtoken") is not None and int(e["rtoken"]) != lease.token
            at = e.get("at")
            lease.ends.append(
                End(
                    kind,
                    None if at is None else float(at),
                    float(e["t"]),
                    lease.sent.get(kind),
                    str(e.get("state")),
                    replay,
                )
            )
        elif ev == "RENEW_ERR":
            for q, id_, token, granted in e.get("leases", ()):
                line = {"q": q, "id": id_, "token": token, "granted": granted, "pid": e.get("pid")}
                lease = leases.find({**line, "src": e.get("src")})
                lease.unsure_renewals.append((float(e.get("sent") or e["t"]), float(e["t"])))
        elif ev in ("NACK_SENT", "RELEASE_SENT"):
            leases.find(e).sent[ev.split("_")[0]] = float(e["t"])
        elif ev == "ACK_SENT":
            for q, id_, token, granted in e["leases"]:
                line = {"q": q, "id": id_, "token": token, "granted": granted, "pid": e.get("pid")}
                leases.find({**line, "src": e.get("src")}).sent["ACK"] = float(e["t"])
        elif ev.endswith("_REFUSED"):
            lease = leases.find(e)
            lease.refusals.append(e)
            lease.sent.pop(ev.split("_")[0], None)  # refused: that call ended nothing
        elif ev == "HANDLER_START":
            leases.find(e).started = True
        elif ev == "HANDLER_END":
            lease = leases.find(e)
            lease.outcome = str(e["outcome"])
            lease.handler_end = float(e["t"])
        elif ev == "CRASH":
            lease = leases.find(e)
            lease.crashed = True
            lease.handler_end = float(e["t"])
    leases.sort()
    return leases


# ----------------------------------------------------------------------------- faults


@dataclass
class _Faults:
    """The chaos events of a run, for attributing causes and excusing outages."""

    kills: dict[int, float] = field(default_factory=dict)
    exits: dict[int, float] = field(default_factory=dict)
    stops: list[tuple[int, float, float]] = field(default_factory=list)
    #: Server down, proxy frozen: (name, from, to).
    outages: list[tuple[str, float, float]] = field(default_factory=list)
    #: Instant network faults and others: (name, at).
    blips: list[tuple[str, float]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    #: Worker pid -> when it wrote WORKER_START.
    started: dict[int, float] = field(default_factory=dict)
    #: The last event's time.
    end: float = 0.0

    def death(self, pid: int) -> float:
        """When worker `pid` died (killed, crashed, exited), or the end of the run."""
        return min(self.kills.get(pid, self.end), self.exits.get(pid, self.end))

    def died(self, pid: int | None, after: float) -> float | None:
        if pid is None:
            return None
        at = min(self.kills.get(pid, float("inf")), self.exits.get(pid, float("inf")))
        return at if at >= after - CLOCK_MS and at != float("inf") else None

    def stopped(self, pid: int | None, start: float, end: float) -> bool:
        return any(p == pid and a < end and b > start for p, a, b in self.stops)

    def outage_within(self, start: float, end: float) -> float:
        """Milliseconds of outage overlapping [start, end]."""
        total = 0.0
        for _, a, b in self.outages:
            total += max(0.0, min(b, end) - max(a, start))
        return total

    def cause(self, lease: Lease, until: float) -> str:
        """The injected fault that most likely took `lease` away before `until` (ms)."""
        start = lease.claim_t if lease.claim_t is not None else float(lease.granted)
        pid = -1 if lease.pid is None else lease.pid
        if lease.crashed:
            return "crash"
        killed = self.kills.get(pid)
        if killed is not None and start - CLOCK_MS <= killed <= until:
            return "kill"
        exited = self.exits.get(pid)
        if exited is not None and start - CLOCK_MS <= exited <= until:
            return "crash"  # another job's crash ended the process
        if self.stopped(pid, start, until):
            return "stop"
        for name, a, b in self.outages:
            if a < until and b > start:
                return name
        for name, at in self.blips:
            if start <= at <= until:
                return name
        return "other"


def _close_stop(faults: _Faults, stopped: dict[int, float], pid: int, t: float) -> None:
    """A stopped worker that dies is stopped no more (its stop ends with its death)."""
    if pid in stopped:
        faults.stops.append((pid, stopped.pop(pid), t))


def _faults(data: LedgerData, limits: Limits) -> _Faults:
    faults = _Faults()
    open_outages: dict[str, float] = {}
    stopped: dict[int, float] = {}
    for e in data.events:
        ev, t = e["ev"], float(e["t"])
        if ev == "KILL":
            if not e.get("at_close"):
                faults.kills.setdefault(int(e["target"]), t)
                faults.counts["kills"] += 1
            _close_stop(faults, stopped, int(e["target"]), t)
        elif ev == "EXIT":
            faults.exits.setdefault(int(e["target"]), t)
            _close_stop(faults, stopped, int(e["target"]), t)
        elif ev == "WORKER_START":
            faults.started[int(e["pid"])] = t
        elif ev == "STOP":
            stopped[int(e["target"])] = t
            faults.counts["stops"] += 1
        elif ev == "CONT":
            pid = int(e["target"])
            if pid in stopped:
                faults.stops.append((pid, stopped.pop(pid), t))
        elif ev in ("SERVER_KILL", "FREEZE", "SERVER_STOP"):
            open_outages[ev] = t
            faults.counts[ev.lower()] += 1
        elif ev in ("SERVER_UP", "UNFREEZE"):
            opener = {"SERVER_UP": ("SERVER_KILL", "SERVER_STOP"), "UNFREEZE": ("FREEZE",)}[ev]
            for name in opener:
                if name in open_outages:
                    label = {"SERVER_KILL": "server kill", "SERVER_STOP": "server stop"}.get(
                        name, "freeze"
                    )
                    faults.outages.append((label, open_outages.pop(name), t))
        elif ev in ("DROP", "DELAY", "FLUSH", "LOSE_REPLY"):
            faults.blips.append((ev.lower().replace("_", " "), t))
            faults.counts[ev.lower()] += 1
        elif ev == "CRASH":
            faults.counts["crashes"] += 1
            faults.exits.setdefault(int(e["pid"]), t)
            _close_stop(faults, stopped, int(e["pid"]), t)
    end = data.events[-1]["t"] if data.events else 0.0
    faults.end = float(end)
    for name, start in open_outages.items():
        faults.outages.append((name.lower(), start, float(end)))
    for pid, start in stopped.items():
        faults.stops.append((pid, start, float(end)))
    return faults


class _Capacity:
    """When the live, running workers had no free handler slot (for I7)."""

    def __init__(self, leases: _Leases, faults: _Faults, concurrency: int) -> None:
        self.faults = faults
        self.concurrency = concurrency
        #: pid -> (alive from, alive until)
        self.alive = {pid: (t, faults.death(pid)) for pid, t in faults.started.items()}
        #: pid -> [(busy from, busy until)] per lease it held
        self.busy: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for job_leases in leases.by_job.values():
            for lease in job_leases:
                if lease.pid is None or lease.claim_t is None:
                    continue
                until = lease.handler_end
                if until is None:
                    until = faults.death(lease.pid)
                self.busy[lease.pid].append((lease.claim_t, until))

    def full_ms(self, start: float, end: float) -> float:
        """Milliseconds of [start, end] during which no worker could claim."""
        if end <= start:
            return 0.0
        alive = {p: span for p, span in self.alive.items() if span[0] < end and span[1] > start}
        stops = [(p, a, b) for p, a, b in self.faults.stops if p in alive and a < end and b > start]
        busy = {
            p: [(a, b) for a, b in self.busy.get(p, ()) if a < end and b > start] for p in alive
        }
        points = {start, end}
        for a, b in alive.values():
            points.update((a, b))
        for _, a, b in stops:
            points.update((a, b))
        for spans in busy.values():
            for a, b in spans:
                points.update((a, b))
        ordered = sorted(p for p in points if start <= p <= end)
        full = 0.0
        for x, y in pairwise(ordered):
            m = (x + y) / 2
            free = any(
                a <= m < b
                and not any(q == p and sa <= m < sb for q, sa, sb in stops)
                and sum(1 for ba, bb in busy[p] if ba <= m < bb) < self.concurrency
                for p, (a, b) in alive.items()
            )
            if not free:
                full += y - x
        return full


# ------------------------------------------------------------------------------ checks


def check(data: LedgerData, final: FinalState | None, limits: Limits) -> Report:
    """Check I1-I9 and compute the figures.

    Args:
        data: the run's ledger.
        final: the final Redis state (None: the checks that need it are skipped).
        limits: what the scenario allows.
    """
    report = Report()
    leases = _build(data, limits)
    faults = _faults(data, limits)
    enqueued = _enqueued(data)
    kinds = {key: kind for key, (kind, _) in enqueued.items()}

    if final is not None:
        _check_loss(report, enqueued, final)
        _check_attempts(report, kinds, final, limits)
        if limits.leftovers:
            _check_leftovers(report, final, limits)
    _check_completions(report, leases, final)
    _check_fencing(report, leases, faults, data, limits)
    _check_overlaps(report, leases)
    _check_recovery(report, leases, faults, limits)
    _check_duplicates(report, leases, faults, kinds)

    figures = report.figures
    figures["jobs"] = sum(1 for _, ok in enqueued.values() if ok)
    figures["torn_lines"] = len(data.torn)
    figures["leases"] = sum(len(v) for v in leases.by_job.values())
    figures["claim_replies_after_deadline"] = len(leases.expired_claims)
    refusals: Counter[str] = Counter()
    for e in data.events:
        if e["ev"].endswith("_REFUSED"):
            refusals[e["ev"].split("_")[0].lower()] += 1
    figures["refusals"] = dict(sorted(refusals.items()))
    figures["faults"] = dict(sorted(faults.counts.items()))
    if final is not None:
        states = Counter(job.state for job in final.jobs.values())
        figures["completed"] = states.get("completed", 0)
        figures["dead"] = states.get("dead", 0)
        figures["dead_poison"] = sum(
            1
            for key, job in final.jobs.items()
            if job.state == "dead" and kinds.get(key) == "poison"
        )
        figures["memory_growth_bytes"] = final.used_memory - final.baseline_memory
        figures["memory_kept_records_bytes"] = final.retained_memory
    return report


def _enqueued(data: LedgerData) -> dict[JobKey, tuple[str, bool]]:
    """Per job sent by a producer: its kind, and whether an enqueue returned."""
    jobs: dict[JobKey, tuple[str, bool]] = {}
    for e in data.of("ENQ_SENT", "ENQ_OK"):
        key = _key(e)
        kind = str(e.get("kind", jobs.get(key, ("normal", False))[0]))
        jobs[key] = (kind, jobs.get(key, (kind, False))[1] or e["ev"] == "ENQ_OK")
    return jobs


def _check_loss(
    report: Report, enqueued: dict[JobKey, tuple[str, bool]], final: FinalState
) -> None:
    lost = 0
    for key, (_, ok) in sorted(enqueued.items()):
        job = final.jobs.get(key)
        if job is not None and job.state in ("completed", "dead"):
            continue
        if not ok and job is None:
            continue  # never acknowledged and not there: an enqueue that did not happen
        lost += 1
        what = "missing" if job is None else f"{job.state} (attempts {job.attempts})"
        report.add(
            "I1", f"job {key[0]}/{key[1]}: enqueued{'' if ok else ' (unconfirmed)'}, finally {what}"
        )
    for key in sorted(set(final.jobs) - set(enqueued)):
        report.add("I1", f"job {key[0]}/{key[1]} exists but no producer sent it")
    report.figures["lost"] = lost


def _check_attempts(
    report: Report, kinds: dict[JobKey, str], final: FinalState, limits: Limits
) -> None:
    dead_other: Counter[str] = Counter()
    for key, job in sorted(final.jobs.items()):
        name = f"job {key[0]}/{key[1]}"
        if job.attempts > job.max_attempts:
            report.add("I6", f"{name}: attempts {job.attempts} > max_attempts {job.max_attempts}")
        kind = kinds.get(key)
        if kind == "poison":
            if job.state == "completed":
                report.add("I6", f"{name}: a poison job completed")
            elif job.state == "dead" and (job.attempts != job.max_attempts or not job.last_error):
                report.add(
                    "I6",
                    f"{name}: poison job dead after {job.attempts} of {job.max_attempts}"
                    f" attempts, last_error {job.last_error!r}",
                )
        elif job.state == "dead":
            reason = (job.last_error or "").splitlines()[-1:] or [""]
            dead_other[reason[0][:60]] += 1
    report.figures["dead_other"] = sum(dead_other.values())
    report.figures["dead_other_reasons"] = dict(dead_other)


def _check_leftovers(report: Report, final: FinalState, limits: Limits) -> None:
    for queue, sets in sorted(final.sets.items()):
        for part, count in sorted(sets.items()):
            if count:
                report.add("I5", f"queue {queue}: {count} job(s) left {part}")
    for name, (kind, pttl) in sorted(final.keys.items()):
        if name in final.allowed or kind == "none":
            continue  # kept on purpose, or expired between the SCAN and the TYPE
        if name.startswith(final.expiring_prefixes):
            if pttl < 0:
                report.add("I5", f"key {name} ({kind}) has no TTL")
            continue
        report.add("I5", f"key {name} ({kind}) left over")
    report.figures["keys"] = len(final.keys)
    growth = final.used_memory - final.baseline_memory - final.retained_memory
    if growth > limits.memory_bytes:
        report.add(
            "I9",
            f"used_memory grew by {growth} bytes beyond the {final.retained_memory} bytes of"
            f" kept records (baseline {final.baseline_memory}), over the {limits.memory_bytes}"
            " allowed",
        )


def _check_completions(report: Report, leases: _Leases, final: FinalState | None) -> None:
    unconfirmed = 0
    for key, job_leases in sorted(leases.by_job.items()):
        name = f"job {key[0]}/{key[1]}"
        acked = [lease for lease in job_leases if lease.ended_by("ACK")]
        if len(acked) > 1:
            report.add(
                "I2",
                f"{name}: acked by {len(acked)} leases: "
                + "; ".join(lease.name for lease in acked),
            )
        for lease in acked:
            times = {e.at for e in lease.ends if e.kind == "ACK"}
            if len(times) > 1:
                report.add("I2", f"{name}: {lease.name} completed at several times {times}")
            completed = min(t for t in times if t is not None) if times - {None} else None
            if completed is None:
                continue
            later = [x for x in job_leases if x.granted > completed + CLOCK_MS]
            for other in later:
                report.add(
                    "I2",
                    f"{name}: {other.name} granted after the completion at "
                    f"{completed:.0f} by {lease.name}",
                )
        if final is None:
            continue
        job = final.jobs.get(key)
        if job is None or job.state != "completed":
            if acked and job is not None:
                report.add("I2", f"{name}: acked by {acked[0].name} but finally {job.state}")
            continue
        if not acked:
            if any("ACK" in lease.sent for lease in job_leases):
                unconfirmed += 1  # its holder died between the ack and the ledger line
            else:
                report.add("I2", f"{name}: completed, but no ack was ever sent")
        elif job.token != acked[-1].token:
            report.add(
                "I2",
                f"{name}: the completed record holds token {job.token}, the ack came from"
                f" {acked[-1].name}",
            )
    if final is not None:
        for key, job in sorted(final.jobs.items()):
            if job.state == "completed" and key not in leases.by_job:
                unconfirmed += 1
    report.figures["acks_unconfirmed"] = unconfirmed


def _accepted_after_end(lease: Lease, others: Iterable[Lease], at: float) -> str | None:
    """Why a transition of `lease` at Redis time `at` was stale, or None if it was not."""
    lease_ms = lease.claim_deadline - lease.granted
    in_force = max(
        [
            lease.claim_deadline,
            *(d for a, d, _ in lease.renewals if a < at),
            # A renewal that got no answer may have run, at the latest when it failed.
            *(min(failed, at) + lease_ms for sent, failed in lease.unsure_renewals if sent < at),
        ]
    )
    if at >= in_force:
        return f"at {at:.0f}, after the lease's deadline {in_force}"
    for other in others:
        if other is not lease and lease.granted < other.granted < at - CLOCK_MS:
            return f"at {at:.0f}, after {other.name} superseded it"
    return None


def _check_fencing(
    report: Report, leases: _Leases, faults: _Faults, data: LedgerData, limits: Limits
) -> None:
    stale: Counter[str] = Counter()
    for key, job_leases in sorted(leases.by_job.items()):
        name = f"job {key[0]}/{key[1]}"
        for prev, nxt in pairwise(job_leases):
            if nxt.token <= prev.token:
                report.add(
                    "I4", f"{name}: {nxt.name} does not have a larger token than {prev.name}"
                )
        for lease in job_leases:
            checked: set[float] = set()
            for renewed_at, _, _ in lease.renewals:
                why = _accepted_after_end(lease, job_leases, renewed_at)
                if why:
                    stale["renew"] += 1
                    report.add("I4", f"{name}: renew of {lease.name} accepted {why}")
            for ended in lease.ends:
                if ended.replay:
                    continue
                at = ended.at if ended.at is not None else ended.sent  # sent: the earliest
                if at is None or at in checked:
                    continue  # unknown, or a re-sent call answered with the first one's record
                checked.add(at)
                why = _accepted_after_end(lease, job_leases, at)
                if why:
                    stale[ended.kind.lower()] += 1
                    report.add("I4", f"{name}: {ended.kind.lower()} of {lease.name} accepted {why}")
    report.figures["stale_acks_accepted"] = stale["ack"]
    report.figures["stale_other_accepted"] = stale["renew"] + stale["nack"] + stale["release"]

    # Each SIGSTOP that outlived a lease its worker held must show in a refusal, or, when the
    # store could not answer the worker after it woke (a server loading its AOF, a dropped
    # connection), in the worker's failed calls: its settler then gives the outcome up on its
    # own once the lease has ended, and nothing reaches the server to be refused. An accepted
    # transition after the lease's end is still caught above.
    overlapped = refused = gave_up = 0
    for pid, start, end in faults.stops:
        held = [
            lease
            for job_leases in leases.by_job.values()
            for lease in job_leases
            if lease.pid == pid
            and lease.claim_t is not None
            and lease.claim_t < start
            and lease.end_bound()[0] > start
            and lease.deadline < end
        ]
        if not held:
            continue
        overlapped += 1
        died = faults.died(pid, end)
        if any(
            e["ev"].endswith("_REFUSED") and e.get("pid") == pid and float(e["t"]) >= end
            for e in data.events
        ):
            refused += 1
        elif any(
            e["ev"].endswith("_ERR") and e.get("pid") == pid and float(e["t"]) >= end
            for e in data.events
        ):
            gave_up += 1
        elif limits.stop_refusals and (died is None or died - end > limits.lease_ms + 1000):
            report.add(
                "I4",
                f"worker pid {pid} was stopped from {start:.0f} to {end:.0f} past the lease of"
                f" {len(held)} job(s) ({held[0].q}/{held[0].id} {held[0].name}) and no"
                " refusal followed",
            )
    report.figures["stops_over_a_lease"] = overlapped
    report.figures["stops_followed_by_refusal"] = refused
    report.figures["stops_followed_by_unanswered_calls"] = gave_up


def _check_overlaps(report: Report, leases: _Leases) -> None:
    overlaps = 0
    for key, job_leases in sorted(leases.by_job.items()):
        for prev, nxt in pairwise(job_leases):
            end, how = prev.end_bound()
            if nxt.granted < end - CLOCK_MS:
                overlaps += 1
                report.add(
                    "I3",
                    f"job {key[0]}/{key[1]}: {nxt.name} overlaps {prev.name}, which ended at"
                    f" the earliest at {end:.0f} ({how}), {end - nxt.granted:.0f} ms later",
                )
    report.figures["overlapping_leases"] = overlaps


def _check_recovery(report: Report, leases: _Leases, faults: _Faults, limits: Limits) -> None:
    waits: list[float] = []
    unrecorded = 0
    allowed_base = limits.reaper_ms * 1.2 + limits.recovery_slack_ms
    capacity = (
        _Capacity(leases, faults, limits.concurrency) if limits.concurrency is not None else None
    )
    for key, job_leases in sorted(leases.by_job.items()):
        for prev, nxt in pairwise(job_leases):
            if prev.ends or prev.sent:
                continue  # ended (or maybe ended) by its holder: not a recovery
            if (
                prev.attempt is not None
                and nxt.attempt is not None
                and (nxt.attempt > prev.attempt + 1)
            ):
                # A lease in between left no line: a worker's claim ran but it never handled
                # the reply (killed, or stopped with its claim queued behind a blocking wait).
                unrecorded += 1
                continue
            wait = nxt.granted - prev.deadline
            if wait < -CLOCK_MS:
                continue  # an overlap: I3 reports it
            waits.append(wait)
            # An outage during the wait, or one that ended shortly before it began (the
            # workers may still be in their reconnection backoff), adds its length and the
            # workers' resumption time.
            outage = faults.outage_within(prev.deadline, nxt.granted)
            near = faults.outage_within(prev.deadline - limits.resume_after_outage_ms, nxt.granted)
            allowed = allowed_base + outage + (limits.resume_after_outage_ms if near else 0)
            if wait > allowed and capacity is not None:
                allowed += capacity.full_ms(prev.deadline, nxt.granted)
            if wait > allowed:
                report.add(
                    "I7",
                    f"job {key[0]}/{key[1]}: {prev.name} expired at {prev.deadline}, granted"
                    f" again only {wait:.0f} ms later ({nxt.name}); allowed {allowed:.0f} ms",
                )
    report.figures["recoveries"] = len(waits)
    report.figures["recoveries_through_an_unrecorded_lease"] = unrecorded
    report.figures["recovery_p50_ms"] = statistics.median(waits) if waits else None
    report.figures["recovery_max_ms"] = max(waits) if waits else None


def _check_duplicates(
    report: Report, leases: _Leases, faults: _Faults, kinds: dict[JobKey, str]
) -> None:
    reruns: Counter[str] = Counter()
    duplicates: Counter[str] = Counter()
    slow = 0
    for key, job_leases in sorted(leases.by_job.items()):
        started = [lease for lease in job_leases if lease.started]
        for prev, nxt in pairwise(started):
            if prev.ended_by("NACK", "RELEASE"):
                continue  # a failed attempt retried, or a lease given back: not a re-run
            cause = faults.cause(prev, float(nxt.granted))
            if cause == "other" and not prev.refusals:
                report.add(
                    "I8",
                    f"job {key[0]}/{key[1]}: run again by {nxt.name} after {prev.name}, whose"
                    " loss the ledger does not show (no fault near it, no refusal)",
                )
                cause = "unexplained"
            reruns[cause] += 1
            if prev.outcome == "ok":  # its work was done, then done again
                duplicates[cause] += 1
                slow += kinds.get(key) == "slow"
    report.figures["reruns"] = sum(reruns.values())
    report.figures["rerun_causes"] = dict(sorted(reruns.items()))
    report.figures["duplicates"] = sum(duplicates.values())
    report.figures["duplicate_causes"] = dict(sorted(duplicates.items()))
    report.figures["duplicates_of_slow_jobs"] = slow


# ------------------------------------------------------------------------- saved runs


def save_run(run_dir: Path, final: FinalState | None, limits: Limits, **meta: Any) -> None:
    """Save what re-checking a run needs besides its ledger (``check.json``)."""
    data = {
        "final": None if final is None else dump_final(final),
        "limits": asdict(limits),
        "meta": meta,
    }
    (run_dir / "check.json").write_text(json.dumps(data))


def recheck(run_dir: Path) -> Report:
    """Check a saved run again (after changing the checker)."""
    data = json.loads((run_dir / "check.json").read_text())
    final = None if data["final"] is None else load_final(data["final"])
    report = check(read_ledger(run_dir), final, Limits(**data["limits"]))
    report.figures.update(data.get("meta") or {})
    return report
