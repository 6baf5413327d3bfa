"""The dashboard over HTTP (no browser): pages, actions, guards, escaping, bounded reads."""

from __future__ import annotations

import html
import logging
import re
import subprocess
import sys
import textwrap

import httpx
import pytest
import redis

import redisq
from redisq import dashboard
from redisq.models import JobState
from tests.dashboard._support import REMOTE, drive, fill, post


def test_every_page_shows_what_redis_holds(store: redisq.Store, url: str, prefix: str) -> None:
    # Given a queue with a job in each state
    ids = fill(store)
    app = dashboard.app(url, prefix=prefix)

    async def scenario(c: httpx.AsyncClient) -> None:
        # Then the overview counts every state the store counts, under its name
        page = (await c.get("/")).text
        for state, n in store.counts("emails").items():
            assert re.search(rf'data-count="{state}" href="[^"]*">{n}</a>', page), (
                f"{state} count {n} missing"
            )
        # and each state's tab lists its job
        for state, job_id in ids.items():
            listing = await c.get("/queues/emails", params={"state": state})
            assert listing.status_code == 200
            assert f'data-job="{job_id}"' in listing.text, state
        # and the job page shows the record: payload, error, lease holder, result
        dead = (await c.get(f"/queues/emails/jobs/{ids['dead']}")).text
        assert "ValueError: boom" in dead
        assert "Traceback line" in dead
        leased = (await c.get(f"/queues/emails/jobs/{ids['leased']}")).text
        assert 'id="lease-holder">worker-1<' in leased
        done = (await c.get(f"/queues/emails/jobs/{ids['completed']}")).text
        assert '"ok": true' in html.unescape(done)
        # and the other pages render
        for path in ("/queues/emails/dead", "/workers", "/schedules", "/redis"):
            r = await c.get(path)
            assert r.status_code == 200, path
        assert "No worker is running" in (await c.get("/workers")).text
        data = (await c.get("/api/overview")).json()
        assert data["rows"][0]["name"] == "emails"
        assert data["rows"][0]["counts"]["dead"] == 1

    drive(app, scenario)


def test_a_queue_page_pages_sorts_and_searches(store: redisq.Store, url: str, prefix: str) -> None:
    # Given 25 ready jobs, priorities 0..24 (the highest priority is claimed first)
    jobs = [
        store.enqueue("q", {"i": i}, id=f"job-{i:02}", name=f"t{i % 2}", priority=i)
        for i in range(25)
    ]
    order = [j.id for j in store.peek("q", 25)]
    app = dashboard.app(url, prefix=prefix, page_size=10)

    def listed(text: str) -> list[str]:
        return re.findall(r'<tr data-job="([^"]+)"', text)

    async def scenario(c: httpx.AsyncClient) -> None:
        # Then pages follow claim order, 10 per page, and the last page holds the rest
        first = listed((await c.get("/queues/q")).text)
        third = listed((await c.get("/queues/q", params={"page": 2})).text)
        assert first == order[:10]
        assert third == order[20:]
        # and desc shows the same order from the other end
        back = listed((await c.get("/queues/q", params={"order": "desc"})).text)
        assert back == list(reversed(order))[:10]
        # and a search by id opens the job; an unknown id says so
        found = await c.get("/queues/q", params={"id": "job-07"})
        assert found.status_code == 303
        assert found.headers["location"] == "/queues/q/jobs/job-07"
        missing = (await c.get("/queues/q", params={"id": "nope"})).text
        assert 'id="missing"' in missing
        # and a search by name finds that task's jobs, a page of them, in claim order
        odd = listed((await c.get("/queues/q", params={"name": "t1"})).text)
        t1 = {j.id for j in jobs if j.name == "t1"}
        assert odd == [i for i in order if i in t1][:10]

    drive(app, scenario)


def test_hostile_payloads_are_escaped_and_capped(
    store: redisq.Store, url: str, prefix: str
) -> None:
    # Given jobs whose payload, name and error carry markup, a huge string and raw bytes
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    huge = "A" * 400_000
    binary = bytes(range(256)) * 4
    a = store.enqueue("q", {"html": evil, "k": {evil: [evil]}}, name=evil)
    b = store.enqueue("q", huge)
    c_ = store.enqueue("q", {"raw": binary, "text": b"plain"})
    store.enqueue("q", 1)
    [claimed] = [j for j in store.claim("q", worker=evil, count=4) if j.id == a.id] or [None]
    assert claimed is not None
    store.nack(claimed, error=evil + "\n" + huge, dead=True)
    # and a job whose failed attempts carry markup in their error and traceback (huge too)
    d = store.enqueue("q", 2, id="hostile-attempts", max_attempts=2)
    for worker in ("w1", evil):
        [job] = store.claim("q", worker=worker)
        trace = f"Traceback (most recent call last):\n  {evil}\n" + "B" * 10_000 + f"\n{evil}"
        store.nack(job, error=f"{evil}: {huge[:500]}\n\n{trace}", delay_ms=0)
    app = dashboard.app(url, prefix=prefix)

    async def scenario(c: httpx.AsyncClient) -> None:
        for path in (
            f"/queues/q/jobs/{a.id}",
            "/queues/q?state=dead",
            "/queues/q/dead",
            "/",
            f"/queues/q/jobs/{b.id}",
            f"/queues/q/jobs/{c_.id}",
            f"/queues/q/jobs/{d.id}",
        ):
            r = await c.get(path)
            assert r.status_code == 200, path
            # Then no markup from the data reaches the page unescaped
            assert "<script>alert" not in r.text, path
            assert "<img src=x" not in r.text, path
            # and every page stays small: values are cut to the cap
            assert len(r.content) < 3 * dashboard._data.VALUE_CAP, path
            assert "default-src 'self'" in r.headers["content-security-policy"]
        page = (await c.get(f"/queues/q/jobs/{a.id}")).text
        assert html.escape(evil, quote=False) in html.unescape(page) or "&lt;script&gt;" in page
        big = (await c.get(f"/queues/q/jobs/{b.id}")).text
        assert "cut to the first 65,536 characters" in big
        # Each attempt is listed, its error and traceback escaped, the traceback folded
        attempts = (await c.get(f"/queues/q/jobs/{d.id}")).text
        assert attempts.count('<li class="attempt"') == 2
        assert attempts.count('<details class="trace"><summary>Traceback</summary>') == 2
        assert html.unescape(attempts).count(evil) >= 5  # 2 errors, 2 tracebacks, a worker
        assert "bytes cut ...]" in attempts  # the store kept 4 KiB of each attempt's text
        assert len(attempts) < 3 * dashboard._data.VALUE_CAP
        raw = (await c.get(f"/queues/q/jobs/{c_.id}")).text
        assert "bytes (hex)" in raw
        assert "00 01 02 03" in raw
        assert "bytes (utf-8)" in raw

    drive(app, scenario)


def test_actions_go_through_the_store(
    store: redisq.Store, url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    ids = fill(store)
    app = dashboard.app(url, prefix=prefix)
    caplog.set_level(logging.INFO, logger="redisq.dashboard")

    async def scenario(c: httpx.AsyncClient) -> None:
        await c.get("/")  # sets the CSRF cookie
        # When the dead job is retried, Then it is ready again and the page says so
        r = await post(c, "retry", queue="emails", id=ids["dead"], next="/queues/emails")
        assert r.status_code == 303
        assert store.get("emails", ids["dead"]).state == JobState.READY
        after = (await c.get(r.headers["location"])).text
        assert "is ready again" in after
        # When a ready job is cancelled, and another deleted
        await post(c, "cancel", queue="emails", id=ids["ready"])
        assert store.get("emails", ids["ready"]).state == JobState.CANCELLED
        await post(c, "delete", queue="emails", id=ids["scheduled"])
        assert store.get("emails", ids["scheduled"]) is None
        # When the queue is paused then resumed
        await post(c, "pause", queue="emails")
        assert "badge paused" in (await c.get("/queues/emails")).text
        await post(c, "resume", queue="emails")
        assert "badge paused" not in (await c.get("/queues/emails")).text
        # When a typed error comes back, Then the user sees it
        r = await post(c, "pause_schedule", queue="emails", schedule="nope", next="/schedules")
        assert "ScheduleNotFound" in (await c.get(r.headers["location"])).text
        # When a purge is not confirmed, Then nothing is purged
        await post(c, "purge", queue="emails", state="completed", confirm="wrong")
        assert store.counts("emails")[JobState.COMPLETED] == 1
        r = await post(c, "purge", queue="emails", state="completed", confirm="emails")
        assert store.counts("emails")[JobState.COMPLETED] == 0
        assert "purged 1 completed" in (await c.get(r.headers["location"])).text

    drive(app, scenario)
    # Then every action was logged with who and what
    logged = [r.getMessage() for r in caplog.records if r.name == "redisq.dashboard"]
    assert any("127.0.0.1" in m and "did retry on queue emails" in m for m in logged), logged
    assert any("did purge on queue emails" in m for m in logged), logged


def test_bulk_dead_letters_by_filter_and_selection(
    store: redisq.Store, url: str, prefix: str
) -> None:
    # Given 30 dead jobs: 20 of task a failing with "timeout", 10 of task b
    for i in range(30):
        store.enqueue("q", i, name="task.a" if i < 20 else "task.b")
    for job in store.claim("q", worker="w", count=30):
        error = "TimeoutError: slow" if job.name == "task.a" else "KeyError: x"
        store.nack(job, error=error, dead=True)
    app = dashboard.app(url, prefix=prefix)

    async def scenario(c: httpx.AsyncClient) -> None:
        page = (await c.get("/queues/q/dead", params={"error": "timeout"})).text
        assert page.count('name="ids"') == 20
        # When two selected jobs are deleted
        picked = re.findall(r'name="ids" value="([^"]+)"', page)[:2]
        data = {"csrf": c.cookies.get("redisq_csrf"), "queue": "q", "ids": picked}
        await c.post("/actions/delete_dead", data=data)
        assert store.counts("q")[JobState.DEAD] == 28
        # When every dead job of task.b is retried
        await post(c, "retry_dead", queue="q", task="task.b", all="1")
        counts = store.counts("q")
        assert counts[JobState.DEAD] == 18
        assert counts[JobState.READY] == 10
        assert {j.name for j in store.list("q", state=JobState.READY)} == {"task.b"}

    drive(app, scenario)


def test_csrf_and_origin_are_checked(store: redisq.Store, url: str, prefix: str) -> None:
    store.enqueue("q", 1)
    app = dashboard.app(url, prefix=prefix)

    async def scenario(c: httpx.AsyncClient) -> None:
        # No cookie yet: refused
        assert (await post(c, "pause", csrf="forged", queue="q")).status_code == 403
        await c.get("/")
        # A form token that is not the cookie's: refused
        assert (await post(c, "pause", csrf="x" * 43, queue="q")).status_code == 403
        # The right token from another site: refused
        data = {"csrf": c.cookies.get("redisq_csrf"), "queue": "q"}
        other = await c.post("/actions/pause", data=data, headers={"origin": "http://evil.test"})
        assert other.status_code == 403
        # The right token from this site: done
        same = await c.post("/actions/pause", data=data, headers={"origin": "http://dash.test"})
        assert same.status_code == 303

    drive(app, scenario)
    with redisq.connect(url, prefix=prefix) as s:
        assert s.redis.hget(f"{{{prefix}:q}}:meta", "paused") in (b"1", "1")


def test_read_only_hides_and_refuses_actions(store: redisq.Store, url: str, prefix: str) -> None:
    ids = fill(store)
    app = dashboard.app(url, prefix=prefix, read_only=True)

    async def scenario(c: httpx.AsyncClient) -> None:
        for path in (
            "/",
            "/queues/emails",
            f"/queues/emails/jobs/{ids['dead']}",
            "/schedules",
            "/queues/emails/dead",
        ):
            text = (await c.get(path)).text
            assert "/actions/" not in text, path
            assert 'id="read-only"' in text
        r = await post(c, "retry", queue="emails", id=ids["dead"])
        assert r.status_code == 403
        assert "read-only" in r.text

    drive(app, scenario)
    assert store.get("emails", ids["dead"]).state == JobState.DEAD


def test_default_authorization_and_token(store: redisq.Store, url: str, prefix: str) -> None:
    store.enqueue("q", 1)

    async def remote(c: httpx.AsyncClient) -> None:
        await c.get("/")
        r = await post(c, "pause", queue="q")
        assert r.status_code == 403
        assert "loopback" in r.text

    # A client off loopback may look but not act
    drive(dashboard.app(url, prefix=prefix), remote, client=REMOTE)
    assert store.redis.hget(f"{{{prefix}:q}}:meta", "paused") in (None, b"0", "0")

    async def with_token(c: httpx.AsyncClient) -> None:
        # Without the token every page asks for it
        assert (await c.get("/")).status_code == 401
        assert (await c.get("/api/overview")).status_code == 401
        assert (await c.post("/login", data={"token": "wrong"})).status_code == 401
        # With it (the login form's cookie), pages and actions work from anywhere
        assert (await c.post("/login", data={"token": "s3cret"})).status_code == 303
        assert (await c.get("/")).status_code == 200
        assert (await post(c, "pause", queue="q")).status_code == 303
        bearer = {"authorization": "Bearer s3cret"}
        c.cookies.delete("redisq_token")
        assert (await c.get("/api/overview", headers=bearer)).status_code == 200

    drive(dashboard.app(url, prefix=prefix, token="s3cret"), with_token, client=REMOTE)
    assert store.redis.hget(f"{{{prefix}:q}}:meta", "paused") in (b"1", "1")


def test_the_authorize_hook_decides(store: redisq.Store, url: str, prefix: str) -> None:
    job = store.enqueue("q", 1)
    asked: list[tuple[str, str | None]] = []

    async def authorize(request: object, action: str, queue: str | None) -> bool:
        asked.append((action, queue))
        return action != "delete"

    app = dashboard.app(url, prefix=prefix, authorize=authorize)

    async def scenario(c: httpx.AsyncClient) -> None:
        await c.get("/")
        assert (await post(c, "delete", queue="q", id=job.id)).status_code == 403
        assert (await post(c, "cancel", queue="q", id=job.id)).status_code == 303

    drive(app, scenario, client=REMOTE)
    assert asked == [("delete", "q"), ("cancel", "q")]
    assert store.get("q", job.id).state == JobState.CANCELLED


def test_redirects_stay_on_the_dashboard(store: redisq.Store, url: str, prefix: str) -> None:
    store.enqueue("q", 1)
    app = dashboard.app(url, prefix=prefix)

    async def scenario(c: httpx.AsyncClient) -> None:
        await c.get("/")
        for target in ("https://evil.test/", "//evil.test/x", "/\\evil.test"):
            r = await post(c, "pause", queue="q", next=target)
            assert r.headers["location"] == "/", target

    drive(app, scenario)


def test_it_mounts_under_a_path(store: redisq.Store, url: str, prefix: str) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    ids = fill(store)
    inner = dashboard.app(url, prefix=prefix)
    host = Starlette(routes=[Mount("/admin/queues", app=inner)])
    host.state.store = inner.state.store

    async def scenario(c: httpx.AsyncClient) -> None:
        page = (await c.get("/admin/queues/")).text
        assert 'href="/admin/queues/static/dashboard.css"' in page
        assert 'href="/admin/queues/queues/emails"' in page
        assert (await c.get("/admin/queues/static/dashboard.js")).status_code == 200
        r = await post(
            c, "retry", base="/admin/queues", queue="emails", id=ids["dead"], next="/admin/queues/"
        )
        assert r.headers["location"] == "/admin/queues/"
        assert store.get("emails", ids["dead"]).state == JobState.READY

    drive(host, scenario)


def test_the_redis_page_warns_about_eviction(real_url: str, prefix: str) -> None:
    app = dashboard.app(real_url, prefix=prefix)
    with redis.Redis.from_url(real_url) as r:
        before = r.config_get("maxmemory-policy")["maxmemory-policy"]
        r.config_set("maxmemory-policy", "allkeys-lru")
        try:

            async def scenario(c: httpx.AsyncClient) -> str:
                return (await c.get("/redis")).text

            text = drive(app, scenario)
        finally:
            r.config_set("maxmemory-policy", before)
    assert 'id="eviction-warning"' in text
    assert "allkeys-lru" in text
    assert "memory used" in text


def _commands(r: redis.Redis) -> int:
    return int(r.info("stats")["total_commands_processed"])


def test_pages_make_the_same_calls_for_60_or_3060_jobs(real_url: str, prefix: str) -> None:
    # The commands a page makes (counted by the server, scripts' own included) do not grow
    # with the queue: no scans, pages of a fixed size.
    paths = ["/", "/queues/q", "/queues/q?state=dead", "/queues/q/dead", "/queues/q?order=desc"]

    def measure() -> list[int]:
        app = dashboard.app(real_url, prefix=prefix)
        with redis.Redis.from_url(real_url) as r:

            async def scenario(c: httpx.AsyncClient) -> list[int]:
                out = []
                for path in paths:
                    await c.get(path)  # warm: connections and script loads
                    before = _commands(r)
                    assert (await c.get(path)).status_code == 200
                    out.append(_commands(r) - before - 1)  # less the INFO itself
                return out

            return drive(app, scenario)

    with redisq.connect(real_url, prefix=prefix) as s:
        s.enqueue_many("q", list(range(60)))  # more than a page (50)
        small = measure()
        for start in range(0, 3000, 1000):
            s.enqueue_many("q", list(range(start, start + 1000)))
        large = measure()
    assert large == small, dict(zip(paths, zip(small, large, strict=True), strict=True))


def test_the_core_imports_without_the_extra() -> None:
    # Given starlette and jinja2 cannot be imported
    code = textwrap.dedent(
        """
        import sys
        sys.modules["starlette"] = None
        sys.modules["jinja2"] = None
        import redisq, redisq.cli
        try:
            import redisq.dashboard
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'redisq[dashboard]'" in done.stdout


def _now_minute(store: redisq.Store) -> int:
    seconds, micros = store.redis.time()
    return (int(seconds) * 1000 + int(micros) // 1000) // 60_000


def test_the_live_overview_keeps_one_sample_a_minute_for_an_hour(
    store: redisq.Store, url: str, prefix: str
) -> None:
    # Given samples older than an hour in the series, and a queue with 3 jobs enqueued
    key = f"{prefix}:dashboard:minutes"
    minute = _now_minute(store)
    store.redis.zadd(key, {f'{{"t":{i},"q":{{}}}}': minute - 200 + i for i in range(100)})
    store.enqueue_many("q", [1, 2, 3])
    app = dashboard.app(url, prefix=prefix)

    async def scenario(c: httpx.AsyncClient) -> list[dict[str, object]]:
        for _ in range(5):
            await c.get("/api/overview")
        series: list[dict[str, object]] = (await c.get("/api/overview?series=1")).json()["series"]
        return series

    series = drive(app, scenario)
    # Then one sample per minute was written (two if a minute turned meanwhile), the old ones
    # trimmed, and the sample holds the queue's counters
    assert 1 <= store.redis.zcard(key) <= 2
    assert 1 <= len(series) <= 2
    assert series[0]["q"] == {"q": [3, 0]}


def test_names_with_slashes_and_markup_route_and_act(
    store: redisq.Store, url: str, prefix: str
) -> None:
    # Given a queue and a job id that hold "/", "%", spaces and markup
    queue, job_id = "team/a <b>%2F", "x/../y?z#1"
    store.enqueue(queue, {"v": 1}, id=job_id)
    [job] = store.claim(queue, worker="w")
    store.nack(job, error="boom", dead=True)
    app = dashboard.app(url, prefix=prefix)

    async def scenario(c: httpx.AsyncClient) -> None:
        page = (await c.get("/")).text
        [link] = re.findall(r'<a href="(/queues/[^"?]+)">', page)
        listing = await c.get(link + "?state=dead")
        assert listing.status_code == 200
        [job_link] = re.findall(r'<a href="(/queues/[^"]+/jobs/[^"]+)">', listing.text)
        job_page = await c.get(job_link)
        assert job_page.status_code == 200
        assert 'id="job-id">x/../y?z#1<' in job_page.text
        # When it is retried from its page, Then the redirect comes back to that page
        r = await post(c, "retry", queue=queue, id=job_id, next=job_link)
        assert r.headers["location"] == job_link
        assert (await c.get(f"/queues/{link.rsplit('/', 1)[1]}/dead")).status_code == 200

    drive(app, scenario)
    assert store.get(queue, job_id).state == JobState.READY


def test_the_workers_page_reads_the_registry_when_the_store_has_one(
    store: redisq.Store, url: str, prefix: str
) -> None:
    import dataclasses

    @dataclasses.dataclass
    class Info:  # the shape matters not: every field is shown
        name: str
        host: str
        pid: int
        queues: list[str]
        in_flight: int
        heartbeat_ms: int

    astore = redisq.connect_async(url, prefix=prefix)
    rows = [Info("w-1", "web-3", 4242, ["emails"], 2, 1_700_000_000_000)]

    async def workers() -> list[Info]:
        return rows

    astore.workers = workers  # type: ignore[attr-defined]
    app = dashboard.app(store=astore)

    async def scenario(c: httpx.AsyncClient) -> str:
        return (await c.get("/workers")).text

    page = drive(app, scenario)
    assert "From the worker registry" in page
    for text in ("w-1", "web-3", "4242", "emails", "2023-11-14 22:13:20.000 UTC"):
        assert text in page, text


def test_actions_are_logged_with_the_host_apps_user(
    store: redisq.Store, url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    from starlette.applications import Starlette
    from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.routing import Mount

    class Everyone(AuthenticationBackend):
        async def authenticate(self, conn: object) -> tuple[AuthCredentials, SimpleUser]:
            return AuthCredentials(["authenticated"]), SimpleUser("ada")

    store.enqueue("q", 1)
    inner = dashboard.app(url, prefix=prefix)
    host = Starlette(
        routes=[Mount("/ops", app=inner)],
        middleware=[Middleware(AuthenticationMiddleware, backend=Everyone())],
    )
    host.state.store = inner.state.store
    caplog.set_level(logging.INFO, logger="redisq.dashboard")

    async def scenario(c: httpx.AsyncClient) -> None:
        await c.get("/ops/")
        assert (await post(c, "pause", base="/ops", queue="q")).status_code == 303

    drive(host, scenario)
    logged = [r.getMessage() for r in caplog.records if r.name == "redisq.dashboard"]
    assert any(m.startswith("dashboard: ada (127.0.0.1:") and "did pause" in m for m in logged)


def test_the_overview_reads_a_few_queues_at_a_time(real_url: str, prefix: str) -> None:
    # Given 40 queues (each row is 5 calls: unbounded, that would be 200 connections at once)
    with redisq.connect(real_url, prefix=prefix) as s:
        for i in range(40):
            s.enqueue(f"q{i:02}", i)
    app = dashboard.app(real_url, prefix=prefix)
    with redis.Redis.from_url(real_url) as r:
        before = int(r.info("clients")["connected_clients"])

        async def scenario(c: httpx.AsyncClient) -> int:
            assert (await c.get("/")).text.count("data-queue=") == 40
            return int(r.info("clients")["connected_clients"])

        after = drive(app, scenario)
    # Then the page opened at most QUEUES_AT_ONCE rows' worth of connections (plus a few)
    assert after - before <= dashboard._data.QUEUES_AT_ONCE * 5 + 4


def test_the_job_page_shows_dependencies(store: redisq.Store, url: str, prefix: str) -> None:
    # Given a child waiting on two parents, one of them completed
    a = store.enqueue("flows", {"n": 1}, id="pa")
    b = store.enqueue("flows", {"n": 2}, id="pb")
    child = store.enqueue("flows", {"n": 3}, id="kid", depends_on=[a, b])
    (first,) = store.claim("flows", worker="w", count=1)
    store.ack(first)
    app = dashboard.app(url, prefix=prefix)

    async def scenario(c: httpx.AsyncClient) -> None:
        # Then the child's page lists its parents with their states, linked
        page = (await c.get(f"/queues/flows/jobs/{child.id}")).text
        parents = page[page.index('id="parents"') : page.index("</ul>", page.index('id="parents"'))]
        assert 'href="/queues/flows/jobs/pa"' in parents
        assert "pa</code></a> completed" in parents
        assert "pb</code></a> ready" in parents
        # and a parent's page lists the child, waiting
        page = (await c.get("/queues/flows/jobs/pb")).text
        assert "kid</code></a> waiting" in page
        # and a job without dependencies has neither list
        store.enqueue("flows", {"n": 4}, id="alone")
        page = (await c.get("/queues/flows/jobs/alone")).text
        assert 'id="parents"' not in page
        assert 'id="children"' not in page

    drive(app, scenario)
