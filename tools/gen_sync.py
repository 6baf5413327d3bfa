"""Generate redisq/_sync/store.py from redisq/_async/store.py (STYLE A4).

Usage:
    python tools/gen_sync.py          # write the sync twin
    python tools/gen_sync.py --check  # exit 1 when the committed twin is out of date

The asyncio client is the source; the sync one is derived by removing async/await and
renaming a few names, so the two can never drift apart.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import unasync

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "redisq" / "_async" / "store.py"
TARGET = ROOT / "redisq" / "_sync" / "store.py"
BANNER = "# Generated from redisq/_async/store.py by tools/gen_sync.py: do not edit.\n"

REPLACEMENTS = {
    "_async": "_sync",
    "AsyncStore": "Store",
    "AsyncTransport": "SyncTransport",
    "connect_async": "connect",
}


def generate() -> str:
    """Return the text of the sync twin."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "_async" / "store.py"
        src.parent.mkdir()
        src.write_text(SOURCE.read_text())
        rule = unasync.Rule("/_async/", "/_sync/", additional_replacements=REPLACEMENTS)
        unasync.unasync_files([str(src)], rules=[rule])
        out = Path(tmp) / "_sync" / "store.py"
        out.write_text(BANNER + out.read_text())
        # Import order changes with the names (_sync sorts after _core): let ruff settle it.
        ruff = [sys.executable, "-m", "ruff"]
        config = ["--config", str(ROOT / "pyproject.toml")]
        subprocess.run(
            [*ruff, "check", "-q", "--fix", "--select", "I", *config, str(out)], check=True
        )
        subprocess.run([*ruff, "format", "-q", *config, str(out)], check=True)
        return out.read_text()


def main(argv: list[str]) -> int:
    text = generate()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run python tools/gen_sync.py")
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
