"""docs/testing.md's example (tasks.py, conftest.py, test_tasks.py) runs as written: its
three files in an empty folder, under a fresh pytest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"


def _files() -> dict[str, str]:
    """The python blocks of the doc, by the file name given just above each (`name.py`)."""
    text = DOC.read_text()
    found = re.findall(r"(?m)^`(\w+\.py)`[^\n]*:\n\n```python\n(.*?)```", text, re.DOTALL)
    return dict(found)


def test_the_documented_conftest_and_tests_pass(tmp_path: Path) -> None:
    files = _files()
    assert sorted(files) == ["conftest.py", "tasks.py", "test_tasks.py"]
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
