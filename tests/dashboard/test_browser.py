"""The dashboard in headless Chromium, against a real server with a running worker.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them; CI fails
without them, elsewhere these tests skip). Screenshots go to $REDISQ_SCREENSHOTS when set
(``REDISQ_SCREENSHOTS=docs/dashboard pytest tests/dashboard/test_browser.py`` refreshes the
ones docs/dashboard.md shows), else to the test's temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import redisq
from redisq import dashboard
from redisq.models import JobState
from tests.conftest import IN_CI
from tests.integration._worker_support import running
from tests.support.cleanup import delete_prefix
from tests.support.polling import wait_for
from tests.support.servers import ServerProcess

uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402  (after the skip)
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
    None,
)
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    missing = "chromium" if CHROMIUM is None else "chromedriver"
    reason = f"{missing} not found: apt-get install chromium chromium-driver"
    if IN_CI:
        pytest.fail(f"the browser tests must run in CI: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,860",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=DRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = os.environ.get("REDISQ_SCREENSHOTS")
    folder = Path(where) if where else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shoot(driver: Any, folder: Path, name: str) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(600, min(int(height) + 40, 1400)))
    assert driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1280, 860)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve the ASGI app with uvicorn on a loopback port in a thread; yield its URL."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, message="uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def server_url(valkey_server: ServerProcess) -> str:
    if not valkey_server.running:
        valkey_server.start()
    return valkey_server.url


@pytest.fixture
def bprefix(server_url: str) -> Iterator[str]:
    value = "b" + os.urandom(5).hex()
    yield value
    delete_prefix(server_url, value)


@pytest.fixture
def store(server_url: str, bprefix: str) -> Iterator[redisq.Store]:
    with redisq.connect(server_url, prefix=bprefix) as connected:
        yield connected


def _text(driver: Any, css: str) -> str:
    # The live refresh may replace the text node between finding and reading: read again.
    for _ in range(20):
        try:
            return str(driver.find_element(By.CSS_SELECTOR, css).text)
        except WebDriverException as exc:
            if "does not belong to the document" not in str(exc) and "stale" not in str(exc):
                raise
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _notice_has(driver: Any, text: str) -> None:
    """Wait for the page an action led to: its notice says `text`."""

    def shown() -> bool:
        found = driver.find_elements(By.CSS_SELECTOR, "#notice")
        try:
            return bool(found) and text in found[0].text
        except WebDriverException:
            return False

    wait_for(shown, timeout=10, message=lambda: f"no notice {text!r} on {driver.current_url}")


def _click(driver: Any, css: str) -> None:
    driver.find_element(By.CSS_SELECTOR, css).click()


def _page_has(driver: Any, text: str, timeout: float = 10) -> None:
    wait_for(
        lambda: text in driver.page_source,
        timeout=timeout,
        message=lambda: f"{text!r} not on {driver.current_url}",
    )


def test_click_through_every_page_with_a_running_worker(
    browser: Any, server_url: str, bprefix: str, shots: Path
) -> None:
    # Given an app whose task fails while `broken` is set, and a worker running it
    app = redisq.App(server_url, prefix=bprefix)
    broken = threading.Event()
    broken.set()

    @app.task(name="emails.send", queue="emails", max_attempts=1, store_result=True)
    def send(to: str) -> str:
        if broken.is_set():
            raise ConnectionError(f"SMTP refused <{to}>")
        return f"sent to {to}"

    @app.task(name="reports.build", queue="reports")
    def build(n: int) -> int:
        return n

    try:
        _click_through(app, send, browser, server_url, bprefix, shots, broken)
    finally:
        app.close()


def _click_through(
    app: redisq.App,
    send: Any,
    browser: Any,
    server_url: str,
    bprefix: str,
    shots: Path,
    broken: threading.Event,
) -> None:
    store = app.store
    with running(
        redisq.Worker(
            app, queues=["emails"], concurrency=2, handle_signals=False, name="mail-worker-1"
        )
    ):
        dead = send.enqueue("<script>alert('x')</script>@example.com")
        wait_for(lambda: store.get("emails", dead.id).state == JobState.DEAD, timeout=10)
        broken.clear()
        for i in range(40):
            send.enqueue(f"user{i}@example.com")
        store.enqueue_many("reports", [{"n": i} for i in range(120)], name="reports.build")
        store.enqueue("reports", {"n": -1}, name="reports.build", delay_ms=3_600_000)
        store.upsert_schedule("nightly", cron="0 3 * * *", queue="reports", name="reports.build")
        wait_for(lambda: store.counts("emails")[JobState.READY] == 0, timeout=20)
        # and a dead job of a queue no worker serves, for the job page's screenshot
        store.enqueue(
            "billing",
            {"invoice": 1042, "amount_cents": 129900},
            name="billing.charge",
            id="inv-1042",
            max_attempts=3,
        )
        # (three failed attempts: a gateway timeout, a 503 from the gateway, then declined)
        for worker, error in zip(
            ("billing-1c2d", "billing-9e0b", "billing-7f3a"), CHARGE_ERRORS, strict=True
        ):
            [charge] = store.claim("billing", worker=worker)
            store.nack(charge, error=error, delay_ms=0)
        store.enqueue("billing", {"invoice": 1043}, name="billing.charge", id="inv-1043")
        store.claim("billing", worker="billing-7f3a", lease_ms=600_000)  # held: in flight
        with serving(dashboard.app(server_url, prefix=bprefix, refresh_ms=400)) as base:
            # The overview lists both queues, with live counts
            browser.get(base + "/")
            assert browser.title.startswith("Overview")
            assert _text(browser, 'tr[data-queue="reports"] [data-count="ready"]') == "120"
            # When more jobs arrive, Then the count changes without a reload
            store.enqueue_many("reports", [{"n": i} for i in range(5)], name="reports.build")
            wait_for(
                lambda: _text(browser, 'tr[data-queue="reports"] [data-count="ready"]') == "125",
                timeout=10,
                message="the live refresh did not update the count",
            )
            _page_has(browser, "· live")
            store.enqueue_many("reports", [{"n": i} for i in range(50)], name="reports.build")
            wait_for(
                lambda: browser.execute_script("return window.redisqSamples") >= 6,
                timeout=10,
                message="the chart has too few samples",
            )
            _shoot(browser, shots, "overview")

            # The queue page: tabs per state, paging
            _click(browser, 'tr[data-queue="reports"] td a')
            assert "Queue" in _text(browser, "h1")
            assert len(browser.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job]")) == 50
            _click(browser, "#next-page")
            assert "page 2 of 4" in _text(browser, ".pager")
            _shoot(browser, shots, "queue")

            # Pause from the queue page; the overview shows it, then resume
            _click(browser, 'button[data-action="pause"]')
            _notice_has(browser, "paused queue reports")
            assert _text(browser, "h1 .badge") == "paused"
            _click(browser, 'button[data-action="resume"]')
            _notice_has(browser, "resumed queue reports")

            # The dead job's page: the hostile address is shown as text, error and all
            browser.get(f"{base}/queues/emails/jobs/{dead.id}")
            assert _text(browser, "#job-state") == "dead"
            assert "<script>alert('x')</script>@example.com" in _text(browser, "#payload")
            assert "SMTP refused" in _text(browser, "#error")
            # Each failed attempt is listed (the worker's one here), its traceback folded
            assert len(browser.find_elements(By.CSS_SELECTOR, "#attempts li.attempt")) == 1
            assert "SMTP refused" in _text(browser, "#attempt-1 .attempt-error")
            trace = browser.find_element(By.CSS_SELECTOR, "#attempt-1 .attempt-trace")
            assert not trace.is_displayed()
            _click(browser, "#attempt-1 details.trace summary")
            assert trace.is_displayed()
            assert "Traceback (most recent call last)" in trace.text
            assert "<script>alert('x')</script>@example.com" in trace.text
            browser.get(f"{base}/queues/billing/jobs/inv-1042")
            items = browser.find_elements(By.CSS_SELECTOR, "#attempts li.attempt")
            assert [i.get_attribute("id") for i in items] == [
                "attempt-3",
                "attempt-2",
                "attempt-1",
            ]
            assert "billing-9e0b" in _text(browser, "#attempt-2")
            assert "retry" in _text(browser, "#attempt-2 .badge")
            assert "dead" in _text(browser, "#attempt-3 .badge")
            _click(browser, "#attempt-3 details.trace summary")
            browser.execute_script("window.scrollTo(0, 0)")
            _shoot(browser, shots, "job")
            browser.get(f"{base}/queues/emails/jobs/{dead.id}")
            # When it is retried, Then the worker completes it: the page shows the result
            _click(browser, 'button[data-action="retry"]')
            _notice_has(browser, "is ready again")

            def completed() -> bool:
                browser.refresh()
                return _text(browser, "#job-state") == "completed"

            wait_for(completed, timeout=15, interval=0.3, message="the retried job did not end")
            assert "sent to" in _text(browser, "#result")

            # Dead letters: select and retry, with the confirmation for "all"
            for _ in range(3):
                ref = send.enqueue("x@example.com")
                wait_for(lambda r=ref: store.get("emails", r.id).state.is_final, timeout=10)
            broken.set()
            refs = [send.enqueue(f"dead{i}@example.com") for i in range(3)]
            wait_for(
                lambda: all(store.get("emails", r.id).state == JobState.DEAD for r in refs),
                timeout=10,
            )
            broken.clear()
            browser.get(f"{base}/queues/emails/dead")
            boxes = browser.find_elements(By.CSS_SELECTOR, 'input[name="ids"]')
            assert len(boxes) == 3
            _shoot(browser, shots, "dead")
            boxes[0].click()
            _click(browser, 'button[data-action="retry-selected"]')
            _notice_has(browser, "retried 1 dead jobs")
            _click(browser, 'button[data-action="retry-all"]')
            browser.switch_to.alert.accept()
            _notice_has(browser, "retried 2 dead jobs")
            wait_for(lambda: store.counts("emails")[JobState.COMPLETED] >= 44, timeout=15)

            # Workers, schedules (run now), Redis
            browser.get(f"{base}/workers")
            assert "mail-worker-1" in _text(browser, "#workers")
            _shoot(browser, shots, "workers")
            browser.get(f"{base}/schedules")
            assert "nightly" in _text(browser, "#schedules")
            _click(browser, 'button[data-action="run_schedule"]')
            _notice_has(browser, "schedule nightly enqueued job")
            _shoot(browser, shots, "schedules")
            browser.get(f"{base}/redis")
            assert "maxmemory-policy" in _text(browser, "#redis")
            _shoot(browser, shots, "redis")

            # Purge asks for the queue's name
            browser.get(f"{base}/queues/reports?state=scheduled")
            _click(browser, "details.danger summary")
            browser.find_element(By.NAME, "confirm").send_keys("reports")
            _click(browser, 'button[data-action="purge"]')
            _notice_has(browser, "purged 1 scheduled jobs")


_EARLIER_CHARGE_ERRORS = (
    """TimeoutError: gateway did not answer within 10 s

Traceback (most recent call last):
  File "billing/tasks.py", line 31, in charge
    gateway.charge(invoice.card, invoice.amount_cents)
  File "billing/gateway.py", line 80, in charge
    reply = self.session.post(self.url, json=body, timeout=10)
TimeoutError: gateway did not answer within 10 s""",
    """GatewayError: 503 Service Unavailable

Traceback (most recent call last):
  File "billing/tasks.py", line 31, in charge
    gateway.charge(invoice.card, invoice.amount_cents)
  File "billing/gateway.py", line 84, in charge
    raise GatewayError(reply.status)
GatewayError: 503 Service Unavailable""",
)
CHARGE_ERROR = """CardDeclined: card ending 4242 declined (insufficient_funds)

Traceback (most recent call last):
  File "billing/tasks.py", line 31, in charge
    gateway.charge(invoice.card, invoice.amount_cents)
  File "billing/gateway.py", line 88, in charge
    raise CardDeclined(reply.code)
billing.gateway.CardDeclined: card ending 4242 declined (insufficient_funds)"""
CHARGE_ERRORS = (*_EARLIER_CHARGE_ERRORS, CHARGE_ERROR)


def test_read_only_mode_in_the_browser(
    browser: Any, server_url: str, bprefix: str, store: redisq.Store
) -> None:
    job = store.enqueue("q", {"a": 1})
    [claimed] = store.claim("q", worker="w")
    store.nack(claimed, error="boom", dead=True)
    with serving(dashboard.app(server_url, prefix=bprefix, read_only=True)) as base:
        for path in ("/", "/queues/q", f"/queues/q/jobs/{job.id}", "/queues/q/dead"):
            browser.get(base + path)
            assert _text(browser, "#read-only") == "read-only"
            assert not browser.find_elements(By.CSS_SELECTOR, "button[data-action]"), path
        # A forged form is refused too
        browser.execute_script(
            "var f = document.createElement('form'); f.method = 'post';"
            "f.action = '/actions/retry'; document.body.appendChild(f); f.submit();"
        )
        _page_has(browser, "read-only")
    assert store.get("q", job.id).state == JobState.DEAD


def test_a_cross_site_form_is_refused(
    browser: Any, server_url: str, bprefix: str, store: redisq.Store
) -> None:
    # Given a page of another origin (another port) that posts to the dashboard
    store.enqueue("q", 1)
    with serving(dashboard.app(server_url, prefix=bprefix)) as base:
        browser.get(base + "/")  # the victim has the dashboard's cookies
        with serving(_evil_site(base)) as evil:
            browser.get(evil + "/")
            _page_has(browser, "CSRF token is missing")
    assert store.redis.hget(f"{{{bprefix}:q}}:meta", "paused") in (None, b"0")


def _evil_site(target: str) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    page = (
        f'<form id="f" method="post" action="{target}/actions/pause">'
        '<input name="queue" value="q"><input name="csrf" value="guess"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )

    async def home(request: Any) -> HTMLResponse:
        return HTMLResponse(page)

    app = Starlette(routes=[Route("/", home)])

    class _Closable:
        async def close(self) -> None:
            return None

    app.state.store = _Closable()
    return app


def test_the_chart_starts_from_the_samples_in_redis(
    browser: Any, server_url: str, bprefix: str, store: redisq.Store
) -> None:
    # Given ten minutes of samples in Redis (as earlier dashboards left them)
    store.enqueue("q", 1)
    seconds, _ = store.redis.time()
    minute = int(seconds) // 60
    entries = {
        f'{{"t":{(minute - 10 + i) * 60_000},"q":{{"q":[{600 * i},{540 * i}]}}}}': minute - 10 + i
        for i in range(10)
    }
    store.redis.zadd(f"{bprefix}:dashboard:minutes", entries)
    with serving(dashboard.app(server_url, prefix=bprefix, refresh_ms=60_000)) as base:
        browser.get(base + "/")
        # Then the chart has their nine per-minute rates at once, plus the rate to the sample
        # this page's first refresh wrote (before any live sample: the next refresh is 60 s on)
        wait_for(
            lambda: browser.execute_script("return window.redisqSamples") == 10,
            timeout=10,
            message="the chart did not start from the series",
        )
