"""Worker processes for the worker benchmarks: started from a code string, run the same redisq.

A benchmark measures the redisq it imported: ``PYTHONPATH=/path/to/a/checkout python
bench/bench_worker.py`` runs that checkout's code in the parent, and its worker processes
(``python -c``, whose first import path is the current directory) are started in that
checkout with it first on PYTHONPATH, so they import the same code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redisq

__all__ = ["CODE", "describe_code", "spawn"]

#: The directory the imported redisq package lives in.
CODE = Path(redisq.__file__).resolve().parent.parent


def describe_code() -> str:
    """Say which redisq runs (its directory and git commit when it is a checkout)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(CODE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"redisq from {CODE.name}/{' at ' + commit if commit else ''}"


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -c code args...`` importing the same redisq; stdout is a text pipe."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CODE), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=CODE,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
