"""The dashboard's ASGI app: pages, actions and their guards (docs/dashboard.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import inspect
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import jinja2
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from redisq._async.store import AsyncStore
from redisq._connect import connect_async
from redisq._version import __version__
from redisq.dashboard import _data, _guard
from redisq.dashboard._actions import ACTIONS, BATCH, do_action
from redisq.dashboard._guard import default_authorize, refuse, safe_next
from redisq.errors import RedisqError
from redisq.models import Flow, JobState

__all__ = ["ACTIONS", "Authorize", "app", "default_authorize"]

logger = logging.getLogger("redisq.dashboard")


#: authorize(request, action, queue) -> allowed; may be a coroutine function.
Authorize = Callable[[Request, str, str | None], bool | Awaitable[bool]]

#: Jobs per page of a queue listing (at most).
MAX_PAGE = 200

_HERE = Path(__file__).parent
_CSRF_COOKIE = "redisq_csrf"
_TOKEN_COOKIE = "redisq_token"
_NOTICE_COOKIE = "redisq_notice"


class _Dashboard:
    """The state of one dashboard app: its store, options and templates."""

    def __init__(
        self,
        store: AsyncStore,
        *,
        read_only: bool,
        token: str | None,
        authorize: Authorize,
        page_size: int,
        title: str,
        refresh_ms: int = 2000,
    ) -> None:
        self.store = store
        self.read_only = read_only
        self.token = token
        self.authorize = authorize
        self.page_size = page_size
        self.title = title
        self.refresh_ms = refresh_ms
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["q"] = lambda s: quote(str(s), safe="")
        self.env.filters["age"] = _data.show_age
        self.env.filters["when"] = _data.show_ms
        self.env.filters["line"] = lambda s: (s or "").strip().split("\n", 1)[0]
        self.env.filters["cell"] = _cell
        self.env.filters["num"] = lambda n: "-" if n is None else f"{n:,}"
        self.env.globals["version"] = __version__
        self.env.globals["query"] = query

    # -- guards ---------------------------------------------------------------------------

    def _token_ok(self, request: Request) -> bool:
        if self.token is None:
            return True
        shown = request.cookies.get(_TOKEN_COOKIE, "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            shown = header[7:].strip()
        ok = bool(shown) and hmac.compare_digest(shown.encode(), self.token.encode())
        if ok:
            request.scope["redisq.token_ok"] = True
        return ok

    @staticmethod
    def _root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def _csrf(self, request: Request) -> tuple[str, bool]:
        value = request.cookies.get(_CSRF_COOKIE, "")
        if len(value) >= 32:
            return value, False
        return secrets.token_urlsafe(32), True

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        csrf, new = self._csrf(request)
        notice = None
        raw = request.cookies.get(_NOTICE_COOKIE)
        if raw:
            with contextlib.suppress(ValueError, TypeError):
                loaded = json.loads(raw)
                if isinstance(loaded, dict):
                    notice = {"kind": str(loaded.get("kind")), "text": str(loaded.get("text"))}
        body = self.env.get_template(template).render(
            request=request,
            root=self._root(request),
            here=_here(request),
            csrf=csrf,
            read_only=self.read_only,
            title=self.title,
            notice=notice,
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        response.headers["content-security-policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["referrer-policy"] = "same-origin"
        response.headers["cache-control"] = "no-store"
        path = self._root(request) or "/"
        if new:
            response.set_cookie(_CSRF_COOKIE, csrf, httponly=True, samesite="strict", path=path)
        if notice is not None:
            response.delete_cookie(_NOTICE_COOKIE, path=path)
        return response

    def _login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", status=401, page="login")

    # -- pages ----------------------------------------------------------------------------

    async def page(
        self, request: Request, handler: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not self._token_ok(request):
            return self._login_page(request)
        try:
            return await handler(request)
        except RedisqError as exc:
            return self.render(
                request, "error.html", status=400, page="error", error=_describe(exc)
            )
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            return self.render(
                request,
                "error.html",
                status=503,
                page="error",
                error=f"cannot reach Redis: {exc}",
            )

    async def overview(self, request: Request) -> Response:
        offset = _int(request.query_params.get("offset"), 0, 0, 10**9)
        rows, total, now_ms = await _data.overview(self.store, offset, 100)
        states = _states(rows)
        return self.render(
            request,
            "overview.html",
            page="overview",
            rows=rows,
            states=states,
            total=total,
            offset=offset,
            now_ms=now_ms,
            refresh_ms=self.refresh_ms,
        )

    async def overview_json(self, request: Request) -> Response:
        if not self._token_ok(request):
            return JSONResponse({"error": "token required"}, status_code=401)
        offset = _int(request.query_params.get("offset"), 0, 0, 10**9)
        rows, total, now_ms = await _data.overview(self.store, offset, 100)
        await _data.record_minute(self.store, now_ms, rows)
        series = (
            await _data.read_series(self.store, now_ms)
            if request.query_params.get("series")
            else []
        )
        return JSONResponse(
            {
                "now_ms": now_ms,
                "queues": total,
                "rows": [dataclasses.asdict(r) for r in rows],
                "series": series,
            },
            headers={"cache-control": "no-store"},
        )

    async def queue_pages(self, request: Request) -> Response:
        """Route /queues/<queue>[/dead | /jobs/<id>] by the raw path's segments: a queue
        name or job id may hold any character, "/" included (links quote it as %2F)."""
        parts = _segments(request)
        if len(parts) == 1:
            request.path_params["queue"] = parts[0]
            return await self.queue(request)
        if len(parts) == 2 and parts[1] == "dead":
            request.path_params["queue"] = parts[0]
            return await self.dead(request)
        if len(parts) == 3 and parts[1] == "jobs":
            request.path_params["queue"], request.path_params["id"] = parts[0], parts[2]
            return await self.job(request)
        return self.render(request, "error.html", status=404, page="error", error="no such page")

    async def queue(self, request: Request) -> Response:
        queue = request.path_params["queue"]
        params = request.query_params
        counts_raw, is_paused, now_ms = await _gather(
            self.store.counts(queue), _data.paused(self.store, queue), _data.server_ms(self.store)
        )
        counts = _data.count_items(counts_raw)
        job_id = params.get("id", "").strip()
        if job_id:
            job = await self.store.get(queue, job_id)
            if job is not None:
                return RedirectResponse(
                    f"{self._root(request)}/queues/{quote(queue, safe='')}/jobs/"
                    f"{quote(job_id, safe='')}",
                    status_code=303,
                )
        state_name = params.get("state", "ready")
        if state_name not in counts:
            state_name = "ready"
        state = JobState(state_name)
        order = "desc" if params.get("order") == "desc" else "asc"
        size = _int(params.get("size"), self.page_size, 1, MAX_PAGE)
        page_no = _int(params.get("page"), 0, 0, 10**9)
        name = params.get("name", "").strip()[:200]
        total = counts[state_name]
        searched = None
        if name:
            jobs, searched = await _data.search_jobs(
                self.store, queue, state, name=name, limit=size
            )
        elif order == "asc":
            jobs = await self.store.list(queue, state=state, limit=size, offset=page_no * size)
        else:
            # The newest first: the same bounded range read from the other end.
            end = max(0, total - page_no * size)
            start = max(0, end - size)
            jobs = (
                list(
                    reversed(
                        await self.store.list(queue, state=state, limit=end - start, offset=start)
                    )
                )
                if end > start
                else []
            )
        pages = max(1, -(-total // size))
        return self.render(
            request,
            "queue.html",
            page="queue",
            queue=queue,
            counts=counts,
            paused=is_paused,
            state=state_name,
            jobs=jobs,
            order=order,
            size=size,
            page_no=page_no,
            pages=pages,
            total=total,
            name=name,
            searched=searched,
            window=_data.SEARCH_WINDOW,
            missing_id=job_id,
            now_ms=now_ms,
        )

    async def job(self, request: Request) -> Response:
        queue = request.path_params["queue"]
        job_id = request.path_params["id"]
        # Its failed attempts come in the same round of reads (one HMGET, lib/attempt_entry).
        job, now_ms, attempts = await _gather(
            self.store.get(queue, job_id),
            _data.server_ms(self.store),
            self.store.attempts(queue, job_id),
        )
        if job is None:
            return self.render(
                request,
                "error.html",
                status=404,
                page="error",
                error=f"no job {job_id!r} in queue {queue!r} (never enqueued, deleted or "
                "trimmed by retention)",
            )
        # Its parents and children with their states, from its queue's dependency graph (a
        # bounded read: store.flow reads at most 1,000 jobs).
        flow = _neighbours(await self.store.flow(queue, job_id), job_id)
        payload, payload_cut = _data.show_value(job.payload)
        result, result_cut = _data.show_value(job.result)
        progress, _ = _data.show_value(job.progress)
        error, error_cut = _data.show_value(job.last_error or "")
        timeline = [
            ("created", job.created_at_ms),
            ("due", job.run_at_ms),
            ("lease deadline", job.lease_deadline_ms),
            ("finished", job.finished_at_ms),
        ]
        return self.render(
            request,
            "job.html",
            page="job",
            queue=queue,
            job=job,
            payload=payload,
            payload_cut=payload_cut,
            result=result,
            result_cut=result_cut,
            progress=progress,
            error=error,
            error_cut=error_cut,
            cap=_data.VALUE_CAP,
            timeline=[(label, ms) for label, ms in timeline if ms],
            now_ms=now_ms,
            extra=_extra_fields(job),
            flow=flow,
            attempts=_data.attempt_rows(attempts),
            attempt_cap=_data.ATTEMPT_TEXT_CAP,
        )

    async def dead(self, request: Request) -> Response:
        queue = request.path_params["queue"]
        task = request.query_params.get("task", "").strip()[:200]
        error = request.query_params.get("error", "").strip()[:200]
        counts, now_ms = await _gather(self.store.counts(queue), _data.server_ms(self.store))
        jobs, searched = await _data.search_jobs(
            self.store, queue, JobState.DEAD, name=task, error=error, limit=self.page_size
        )
        return self.render(
            request,
            "dead.html",
            page="dead",
            queue=queue,
            dead=counts.get(JobState.DEAD, 0),
            jobs=jobs,
            searched=searched,
            window=_data.SEARCH_WINDOW,
            task=task,
            error=error,
            batch=BATCH,
            now_ms=now_ms,
        )

    async def workers(self, request: Request) -> Response:
        infos, now_ms = await _gather(self.store.workers(), _data.server_ms(self.store))
        rows = [_data.as_row(info) for info in infos[:1000]]
        return self.render(
            request,
            "workers.html",
            page="workers",
            rows=rows,
            more=max(0, len(infos) - 1000),
            columns=[c for c in (rows[0] if rows else {}) if c != "jobs"],
            now_ms=now_ms,
        )

    async def schedules(self, request: Request) -> Response:
        items, now_ms = await _gather(self.store.schedules(), _data.server_ms(self.store))
        return self.render(
            request,
            "schedules.html",
            page="schedules",
            schedules=items[:1000],
            more=max(0, len(items) - 1000),
            now_ms=now_ms,
        )

    async def redis_page(self, request: Request) -> Response:
        info = await _data.redis_info(self.store)
        keys = [
            ("redis_version", "version"),
            ("valkey_version", "valkey version"),
            ("redis_mode", "mode"),
            ("uptime_in_seconds", "uptime (s)"),
            ("used_memory_human", "memory used"),
            ("used_memory_peak_human", "memory peak"),
            ("maxmemory_human", "maxmemory"),
            ("maxmemory_policy", "maxmemory-policy"),
            ("mem_fragmentation_ratio", "fragmentation"),
            ("connected_clients", "connected clients"),
            ("blocked_clients", "blocked clients"),
            ("evicted_keys", "evicted keys"),
            ("total_commands_processed", "commands processed"),
        ]
        rows = [(label, info[key]) for key, label in keys if key in info]
        errors = [str(v) for k, v in info.items() if k.endswith("_error")]
        policy = info.get("maxmemory_policy")
        return self.render(
            request,
            "redis.html",
            page="redis",
            rows=rows,
            errors=errors,
            policy=policy,
        )

    # -- actions --------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        form = await _guard.form(request)
        shown = str(form.get("token", ""))
        root = self._root(request)
        if self.token is None or not hmac.compare_digest(shown.encode(), self.token.encode()):
            logger.warning("dashboard login refused from %s", _guard.who(request))
            return self._login_page(request)
        response = RedirectResponse(f"{root}/", status_code=303)
        response.set_cookie(
            _TOKEN_COOKIE, shown, httponly=True, samesite="strict", path=root or "/"
        )
        return response

    async def act(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ACTIONS:
            return refuse(f"unknown action {action!r}", 404)
        if self.read_only:
            return refuse("the dashboard is read-only: actions are turned off", 403)
        if not self._token_ok(request):
            return refuse("a token is required", 401)
        form = await _guard.form(request)
        csrf = request.cookies.get(_CSRF_COOKIE, "")
        sent = str(form.get("csrf", ""))
        if not csrf or not hmac.compare_digest(csrf.encode(), sent.encode()):
            return refuse("the form's CSRF token is missing or stale: reload the page", 403)
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
            return refuse(f"cross-origin request from {origin} refused", 403)
        queue = str(form.get("queue", "")) or None
        allowed = self.authorize(request, action, queue)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        who = _guard.who(request)
        if not allowed:
            logger.warning("dashboard: %s refused %s on queue %s", who, action, queue)
            return refuse(
                f"not allowed: {action} (the dashboard allows actions from loopback only, "
                "unless it has a token or an authorize hook)",
                403,
            )
        target = safe_next(self._root(request), str(form.get("next", "")))
        try:
            kind, text = await do_action(self.store, action, queue, form)
        except RedisqError as exc:
            kind, text = "error", _describe(exc)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            kind, text = "error", f"cannot reach Redis: {exc}"
        log = logger.info if kind == "ok" else logger.warning
        log("dashboard: %s did %s on queue %s: %s", who, action, queue, text)
        if kind == "ok" and action in ("delete", "purge") and "/jobs/" in target:
            target = f"{self._root(request)}/queues/{quote(queue or '', safe='')}"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            _NOTICE_COOKIE,
            json.dumps({"kind": kind, "text": text[:500]}),
            httponly=True,
            samesite="strict",
            path=self._root(request) or "/",
        )
        return response


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _cell(value: Any) -> str:
    """A record's field as short text: lists joined, mappings as `key value` pairs."""
    if isinstance(value, dict):
        text = ", ".join(f"{k} {v}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= 300 else text[:300] + "…"


def _here(request: Request) -> str:
    """This page's path and query as the browser sent them (quoted: a form's `next`)."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(request.url.path)
    query = request.url.query
    return path + (f"?{query}" if query else "")


def _segments(request: Request) -> list[str]:
    """The quoted segments after /queues/, unquoted one by one (so %2F stays inside one)."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(request.url.path)
    root = quote(str(request.scope.get("root_path", "")).rstrip("/"))
    if root and path.startswith(root):
        path = path[len(root) :]
    rest = path.split("?", 1)[0].removeprefix("/queues/")
    return [unquote(part) for part in rest.split("/")]


def _int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(text) if text else default
    except ValueError:
        value = default
    return min(max(value, low), high)


def _states(rows: list[_data.QueueRow]) -> list[str]:
    """Every state any row counts, in the store's order (new states show up by themselves)."""
    states = [str(s) for s in JobState]
    for row in rows:
        for name in row.counts:
            if name not in states:
                states.append(name)
    return states


_SHOWN = {
    "id",
    "queue",
    "name",
    "payload",
    "state",
    "result",
    "progress",
    "last_error",
    "created_at_ms",
    "run_at_ms",
    "lease_deadline_ms",
    "finished_at_ms",
    "worker",
    "token",
}


def _extra_fields(job: Any) -> list[tuple[str, str]]:
    """The job's other fields (options, and whatever later versions add), as text."""
    out = []
    for f in dataclasses.fields(job):
        if f.name in _SHOWN:
            continue
        value = getattr(job, f.name)
        text, _ = _data.show_value(value, cap=2_000)
        out.append((f.name, text))
    return out


async def _gather(*aws: Awaitable[Any]) -> Any:
    import asyncio

    return await asyncio.gather(*aws)


def app(
    url: str | None = None,
    *,
    store: AsyncStore | None = None,
    prefix: str = "redisq",
    read_only: bool = False,
    token: str | None = None,
    authorize: Authorize | None = None,
    page_size: int = 50,
    title: str = "redisq",
    refresh_ms: int = 2000,
    **connect_options: Any,
) -> Starlette:
    """Build the dashboard as an ASGI app (Starlette), to serve or mount.

    Args:
        url: the Redis URL (as for `redisq.connect`); or pass `store`.
        store: an AsyncStore to use instead of connecting to `url`.
        prefix: the key prefix of the queues shown (with `url`).
        read_only: hide every action and refuse them (HTTP 403).
        token: a secret every page and action then requires (a login form sets it as a
            cookie; or send ``Authorization: Bearer <token>``).
        authorize: ``authorize(request, action, queue) -> bool`` (or awaitable), asked
            before each action (see ACTIONS); default: `default_authorize` (loopback
            clients, or the token when one is set).
        page_size: jobs per page of the queue and dead-letter pages.
        title: shown in the header and the page titles.
        refresh_ms: how often the overview's live counts, rates and chart refresh.
        connect_options: passed to `redisq.connect_async` with `url`.

    Raises:
        ValueError: neither or both of `url` and `store`.
    """
    if (url is None) == (store is None):
        raise ValueError("give the dashboard either url= or store=, not both or neither")
    own = store is None
    the_store = (
        store if store is not None else connect_async(url or "", prefix=prefix, **connect_options)
    )
    dash = _Dashboard(
        the_store,
        read_only=read_only,
        token=token or None,
        authorize=authorize or default_authorize,
        page_size=max(1, min(page_size, MAX_PAGE)),
        title=title,
        refresh_ms=max(250, refresh_ms),
    )

    def page(handler: Callable[[Request], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            return await dash.page(request, handler)

        return endpoint

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if own:
                await the_store.close()

    routes = [
        Route("/", page(dash.overview)),
        Route("/api/overview", dash.overview_json),
        Route("/queues/{rest:path}", page(dash.queue_pages)),
        Route("/workers", page(dash.workers)),
        Route("/schedules", page(dash.schedules)),
        Route("/redis", page(dash.redis_page)),
        Route("/login", dash.login, methods=["POST"]),
        Route("/actions/{action}", dash.act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    application = Starlette(routes=routes, lifespan=lifespan)
    application.state.redisq_dashboard = dash
    application.state.store = the_store
    return application


def query(**params: Any) -> str:
    """A query string of the non-empty params (templates build links with it)."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


def _neighbours(flow: Flow, job_id: str) -> dict[str, list[tuple[str, str]]]:
    """A job's parents and children as (id, state) pairs, 'gone' for a job no longer stored
    (deleted, or trimmed by retention); empty for a job without dependencies."""
    node = flow.nodes.get(job_id)
    if node is None:
        return {}

    def state(i: str) -> str:
        other = flow.nodes.get(i)
        return str(other.job.state) if other is not None and other.job is not None else "gone"

    return {
        side: [(i, state(i)) for i in ids]
        for side, ids in (("parents", node.parents), ("children", node.children))
        if ids
    }
