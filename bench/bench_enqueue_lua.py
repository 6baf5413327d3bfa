"""Where an enqueue_many call of new jobs spends its time inside the script (Lua's os.clock).

A copy of lua/enqueue.lua with os.clock marks between its phases runs in place of the script
(loaded under its own SHA, returning the phase times instead of its reply) on calls of
--batch new jobs; the table gives each phase's mean over --calls calls (the first 10 are not
counted). CPU time of the server process, so other load on the machine moves it little.

    python bench/bench_enqueue_lua.py [--batch 1000] [--calls 100] [--url redis://...]
"""

from __future__ import annotations

import argparse
import os
import sys

import msgpack
import redis
from _server import bench_server

from redisq._core.scripts import script

#: Phase names, each ending where its marker (a line of lua/enqueue.lua) begins.
MARKS = [
    ("-- Validate every job.", "arguments and meta"),
    ("-- Look up the ids,", "validate"),
    ("local ukeys = {}", "look up the ids"),
    ("-- Decide per job:", "unique keys"),
    ("if #fresh == 0 then", "decide"),
    ("-- Write: the index entries first", "type checks"),
    ("for _, set in ipairs(", "build records"),
    ("write_jobs(jobs_hash, records)\nfor", "ZADD"),
    ("if #unique_pairs > 0 then\n  chunks", "HSET records"),
    ("wake(wake_set)\nreturn", "unique HSET and meta"),
]
WARM_UP = 10


def instrumented() -> str:
    """The enqueue script with os.clock marks; it returns the phase times."""
    src = script("enqueue").source
    start = src.index("if not count or count < 1 or count > CAPS.BATCH")
    src = src[:start] + "local clock_marks = {os.clock()}\n" + src[start:]
    for marker, _ in MARKS:
        if marker not in src:
            raise SystemExit(f"marker not found in lua/enqueue.lua: {marker!r}")
        src = src.replace(marker, "clock_marks[#clock_marks + 1] = os.clock()\n" + marker, 1)
    end = "return {STATUS.OK, now, entries, is_new}"
    if end not in src:
        raise SystemExit("the final return of lua/enqueue.lua changed")
    return src.replace(
        end,
        "clock_marks[#clock_marks + 1] = os.clock()\nlocal out = {}\n"
        "for k = 2, #clock_marks do out[k - 1] = tostring(clock_marks[k] - clock_marks[k - 1])"
        " end\nreturn out",
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--url", default=None)
    args = p.parse_args()
    names = [name for _, name in MARKS] + ["wake"]
    parts = ("meta", "ready", "sch", "uniq", "jobs", "wake", "gready", "gturn", "gleased", "gjob")
    keys = [f"{{lua-bench}}:{part}" for part in parts]
    with bench_server(args.url) as server:
        client = redis.Redis.from_url(server.url)
        sha = client.script_load(instrumented())
        totals = [0.0] * len(names)
        counted = 0
        for call in range(args.calls + WARM_UP):
            argv: list[object] = []
            for i in range(args.batch):
                payload = msgpack.packb({"n": i})
                argv += [os.urandom(16).hex(), payload, "", "0", "", "0", "3", "", "", ""]
            out = client.evalsha(sha, len(keys), *keys, "", "bench", str(args.batch), *argv)
            if call >= WARM_UP:
                counted += 1
                for k, value in enumerate(out):
                    totals[k] += float(value)
        for key in keys:
            client.delete(key)
        client.close()
    print(f"## enqueue script phases, calls of {args.batch:,} new jobs, mean of {counted}")
    print("| phase | ms per call |\n|---|---:|")
    for name, total in zip(names, totals, strict=True):
        print(f"| {name} | {1e3 * total / counted:.2f} |")
    print(f"| all | {1e3 * sum(totals) / counted:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
