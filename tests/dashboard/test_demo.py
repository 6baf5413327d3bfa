"""`redisq demo --dashboard PORT`: the demo's jobs on the dashboard until Ctrl-C (issue 14.6)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.polling import wait_for

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_demo_serves_the_dashboard_until_ctrl_c(tmp_path: Path) -> None:
    port = _free_port()
    out_path = tmp_path / "out.txt"
    err_path = tmp_path / "err.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "redisq", "demo", "--jobs", "300", "--dashboard", str(port)],
            stdout=out,
            stderr=err,
            text=True,
        )
    try:
        wait_for(
            lambda: "still serves" in out_path.read_text() or proc.poll() is not None,
            timeout=60,
            interval=0.1,
        )
        text = out_path.read_text() + err_path.read_text()
        assert f"the dashboard is on http://127.0.0.1:{port}/" in text, text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
            page = reply.read().decode()
        # The three queues of the demo, with what the run left
        for queue in ("critical", "default", "bulk"):
            assert f'data-queue="{queue}"' in page
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_dashboard_command_serves_until_ctrl_c(
    real_url: str, prefix: str, tmp_path: Path
) -> None:
    import redisq

    with redisq.connect(real_url, prefix=prefix) as store:
        store.enqueue("emails", {"to": "ada@example.com"})
    port = _free_port()
    out_path = tmp_path / "out.txt"
    argv = [sys.executable, "-m", "redisq", "dashboard", "--url", real_url, "--prefix", prefix]
    with out_path.open("w") as out:
        proc = subprocess.Popen(
            [*argv, "--port", str(port), "--read-only"], stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def page() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
                    return str(reply.read().decode())
            except OSError:
                assert proc.poll() is None, out_path.read_text()
                return None

        text = wait_for(page, timeout=30, interval=0.1)
        assert 'data-queue="emails"' in text
        assert 'id="read-only"' in text
        assert f"redisq dashboard: http://127.0.0.1:{port}/ (read-only)" in out_path.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
