"""The dashboard's templates and assets ship in the wheel, behind the `dashboard` extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "redisq" / "dashboard"


@pytest.mark.slow
def test_the_wheel_carries_the_dashboard_assets(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = archive.read(metadata).decode()
    if shutil.which("git") and (ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "redisq/dashboard/templates", "redisq/dashboard/static"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    else:
        listed = [
            str(p.relative_to(ROOT))
            for p in HERE.rglob("*")
            if p.is_file() and p.parent.name in ("templates", "static")
        ]
    assert listed, "no tracked dashboard assets"
    assert set(listed) <= names
    assert "Provides-Extra: dashboard" in meta
    assert "starlette" in meta
    assert "jinja2" in meta


def test_the_pages_load_nothing_from_elsewhere() -> None:
    # Every script, stylesheet and image a page uses is the dashboard's own.
    for template in (HERE / "templates").glob("*.html"):
        text = template.read_text()
        assert "http://" not in text, template.name
        assert "https://" not in text, template.name
        assert "//cdn" not in text, template.name
    for asset in (HERE / "static").iterdir():
        text = asset.read_text()
        assert "http://" not in text, asset.name
        assert "https://" not in text, asset.name
