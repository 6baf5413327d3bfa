"""OpenTelemetry tracing (issue 13 point 5): redisq.tracing.TracingMiddleware.

Spans go to the SDK's in-memory exporter through a TracerProvider of each test's own (never
the global one). Workers run in a thread on every backend (valkey, redis7, memory); tests
poll with deadlines.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import redisq
from redisq import JobState
from redisq._core.records import unpack_record
from redisq._core.tracectx import MAX_TRACESTATE_LENGTH, pack_trace
from redisq.tracing import TracingMiddleware, current_trace_context, link_context
from tests.support.polling import wait_for

from ._worker_support import running, wait_job

POOLS = ["thread", "async"]
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    yield made
    made.shutdown()


@pytest.fixture
def app(url: str, prefix: str, provider: TracerProvider) -> Iterator[redisq.App]:
    made = redisq.App(url, prefix=prefix, middleware=[TracingMiddleware(provider)])
    yield made
    made.close()


def make_worker(app: redisq.App, **options: Any) -> redisq.Worker:
    options.setdefault("concurrency", 2)
    options.setdefault("idle_wait_ms", 50)
    options.setdefault("grace_ms", 0)
    options.setdefault("handle_signals", False)
    return redisq.Worker(app, **options)


def spans(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


def wait_spans(exporter: InMemorySpanExporter, kind: SpanKind, n: int) -> list[ReadableSpan]:
    return wait_for(
        lambda: found if len(found := spans(exporter, kind)) >= n else None,
        message=lambda: f"{n} {kind} spans; have {exporter.get_finished_spans()}",
    )


def traceparent(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def ids(ctx: trace.SpanContext | None) -> tuple[int, int]:
    """A span context's trace and span ids (a link's is marked remote: it came from Redis)."""
    assert ctx is not None
    return ctx.trace_id, ctx.span_id


def raw_record(app: redisq.App, prefix: str, queue: str, job_id: str) -> bytes:
    data = app.store.redis.hget(f"{{{prefix}:{queue}}}:jobs", job_id)
    assert isinstance(data, bytes)
    return data


# ------------------------------------------------------------------------------ enqueue


def test_enqueue_makes_a_producer_span_and_stores_its_context(
    app: redisq.App, exporter: InMemorySpanExporter, prefix: str
) -> None:
    @app.task(queue="mail")
    def send(to: str) -> None: ...

    # When a task call is enqueued
    ref = send.enqueue("a@example.com")
    # Then one PRODUCER span with the messaging attributes
    [span] = spans(exporter, SpanKind.PRODUCER)
    assert span.name == "publish mail"
    assert dict(span.attributes or {}) == {
        "messaging.system": "redis",
        "messaging.destination.name": "mail",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.redisq.task.name": send.name,
        "messaging.message.id": ref.id,
    }
    # And the job's record holds that span's context, in front of the payload
    stored = app.store.get("mail", ref.id)
    assert stored is not None
    assert stored.trace_context == {"traceparent": traceparent(span)}
    assert stored.payload == {"args": ["a@example.com"], "kwargs": {}}
    blob = unpack_record(raw_record(app, prefix, "mail", ref.id))["payload"]
    assert blob == pack_trace(traceparent(span), msgpack.packb(stored.payload))


def test_producer_span_is_a_child_of_the_callers_span_and_keeps_tracestate(
    app: redisq.App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    @app.task(queue="q")
    def work() -> None: ...

    # Given a request span whose context came with a tracestate
    incoming = TraceContextTextMapPropagator().extract(
        {"traceparent": PARENT, "tracestate": "vendor=abc,other=x-1"}
    )
    token = otel_context.attach(incoming)
    try:
        ref = work.enqueue()
    finally:
        otel_context.detach(token)
    [span] = spans(exporter, SpanKind.PRODUCER)
    assert span.parent is not None
    assert span.parent.span_id == 0xB7AD6B7169203331
    job = app.store.get("q", ref.id)
    assert job is not None
    assert job.trace_context == {
        "traceparent": traceparent(span),
        "tracestate": "vendor=abc,other=x-1",
    }


def test_an_oversized_tracestate_is_dropped_and_the_enqueue_goes_through(
    app: redisq.App, exporter: InMemorySpanExporter
) -> None:
    @app.task(queue="q")
    def work() -> None: ...

    # Given an incoming context with a tracestate OpenTelemetry accepts but over W3C's 512
    # characters (10 members of 100)
    state = ",".join(f"k{i}={'v' * 100}" for i in range(10))
    assert len(state) > MAX_TRACESTATE_LENGTH
    token = otel_context.attach(
        TraceContextTextMapPropagator().extract({"traceparent": PARENT, "tracestate": state})
    )
    try:
        ref = work.enqueue()
    finally:
        otel_context.detach(token)
    # Then the job keeps the traceparent only
    [span] = spans(exporter, SpanKind.PRODUCER)
    job = app.store.get("q", ref.id)
    assert job is not None
    assert job.trace_context == {"traceparent": traceparent(span)}


def test_enqueue_many_makes_one_producer_span_whose_context_every_job_carries(
    app: redisq.App, exporter: InMemorySpanExporter
) -> None:
    @app.task(queue="q")
    def add(x: int) -> int:
        return x

    # When three calls are enqueued at once (one with options of its own: a Spec)
    refs = add.enqueue_many([add.call(1), add.call(2), add.options(priority=5).call(3)])
    [span] = spans(exporter, SpanKind.PRODUCER)
    assert span.attributes is not None
    assert span.attributes["messaging.operation.name"] == "publish"
    assert span.attributes["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in span.attributes
    # Then every job carries the span's context
    for ref in refs:
        job = app.store.get("q", ref.id)
        assert job is not None
        assert job.trace_context == {"traceparent": traceparent(span)}


def test_a_failed_enqueue_ends_its_span_with_the_error(
    app: redisq.App, exporter: InMemorySpanExporter
) -> None:
    @app.task(queue="q")
    def work(x: Any) -> None: ...

    with pytest.raises(redisq.errors.SerializationError):
        work.enqueue(object())
    [span] = spans(exporter, SpanKind.PRODUCER)
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_the_async_api_carries_the_context(
    app: redisq.App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    @app.task(queue="q")
    def work(x: int) -> None: ...

    tracer = provider.get_tracer("test")

    async def main() -> tuple[redisq.JobRef, list[redisq.JobRef]]:
        # Within a span of the caller's, in its event loop
        with tracer.start_as_current_span("request"):
            one = await work.aenqueue(1)
            many = await work.aenqueue_many([work.call(2), work.call(3)])
        await app.aclose()
        return one, many

    one, many = asyncio.run(main())
    producers = spans(exporter, SpanKind.PRODUCER)
    [request] = [s for s in exporter.get_finished_spans() if s.name == "request"]
    assert len(producers) == 2
    request_ctx = request.get_span_context()
    assert request_ctx is not None
    for span in producers:
        assert span.parent is not None
        assert span.parent.span_id == request_ctx.span_id
    single, batch = sorted(producers, key=lambda s: s.start_time or 0)
    job = app.store.get("q", one.id)
    assert job is not None
    assert job.trace_context == {"traceparent": traceparent(single)}
    for ref in many:
        job = app.store.get("q", ref.id)
        assert job is not None
        assert job.trace_context == {"traceparent": traceparent(batch)}


# ------------------------------------------------------------------------------ workers


@pytest.mark.parametrize("pool", POOLS)
def test_a_run_makes_a_consumer_span_linked_to_the_enqueue(
    app: redisq.App, provider: TracerProvider, exporter: InMemorySpanExporter, pool: str
) -> None:
    tracer = provider.get_tracer("test")

    @app.task(queue="q")
    def work(x: int) -> int:
        with tracer.start_as_current_span("inside"):
            return x * 2

    # When a traced job runs on a worker
    ref = work.enqueue(21)
    with running(make_worker(app, pool=pool)) as worker:
        wait_job(app, ref, state=JobState.COMPLETED)
        [consumer] = wait_spans(exporter, SpanKind.CONSUMER, 1)
        name = worker.name
    [producer] = spans(exporter, SpanKind.PRODUCER)
    # Then one CONSUMER span, linked to the producer, in a trace of its own
    assert consumer.name == "process q"
    assert [ids(link.context) for link in consumer.links] == [ids(producer.get_span_context())]
    assert consumer.parent is None
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "redis",
        "messaging.destination.name": "q",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": ref.id,
        "messaging.client.id": name,
        "messaging.redisq.task.name": work.name,
        "messaging.redisq.attempt": 1,
        "messaging.redisq.max_attempts": 3,
        "messaging.redisq.outcome": "completed",
    }
    assert consumer.status.status_code is StatusCode.UNSET
    # And the handler's own span is its child
    [inside] = [s for s in exporter.get_finished_spans() if s.name == "inside"]
    consumer_ctx = consumer.get_span_context()
    assert consumer_ctx is not None
    assert inside.parent is not None
    assert inside.parent.span_id == consumer_ctx.span_id


@pytest.mark.parametrize("pool", POOLS)
def test_each_retry_makes_a_new_span_linked_to_the_enqueue(
    app: redisq.App, exporter: InMemorySpanExporter, pool: str
) -> None:
    runs: list[int] = []

    @app.task(queue="q", max_attempts=3, backoff=lambda attempt: 0)
    def flaky() -> str:
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("first attempt fails")
        return "ok"

    ref = flaky.enqueue()
    with running(make_worker(app, pool=pool)):
        wait_job(app, ref, state=JobState.COMPLETED)
        first, second = sorted(
            wait_spans(exporter, SpanKind.CONSUMER, 2),
            key=lambda s: int((s.attributes or {})["messaging.redisq.attempt"]),  # type: ignore[arg-type]
        )
    [producer] = spans(exporter, SpanKind.PRODUCER)
    # Then two spans, both linked to the enqueue, the failed one with its error
    for span in (first, second):
        assert [ids(link.context) for link in span.links] == [ids(producer.get_span_context())]
    assert first.get_span_context() != second.get_span_context()
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["messaging.redisq.attempt"] == 1
    assert first.attributes["messaging.redisq.outcome"] == "retry"
    assert first.attributes["error.type"] == "ValueError"
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ValueError: first attempt fails"
    [event] = first.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.message"] == "first attempt fails"
    assert second.attributes["messaging.redisq.attempt"] == 2
    assert second.attributes["messaging.redisq.outcome"] == "completed"
    assert second.status.status_code is StatusCode.UNSET


def test_a_dead_job_ends_its_span_with_an_error(
    app: redisq.App, exporter: InMemorySpanExporter
) -> None:
    @app.task(queue="q", max_attempts=1)
    def fails() -> None:
        raise KeyError("gone")

    ref = fails.enqueue()
    with running(make_worker(app)):
        wait_job(app, ref, state=JobState.DEAD)
        [span] = wait_spans(exporter, SpanKind.CONSUMER, 1)
    assert span.attributes is not None
    assert span.attributes["messaging.redisq.outcome"] == "dead"
    assert span.attributes["error.type"] == "KeyError"
    assert span.status.status_code is StatusCode.ERROR


def test_parent_on_enqueue_puts_every_attempt_in_the_enqueues_trace(
    url: str, prefix: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = redisq.App(
        url, prefix=prefix, middleware=[TracingMiddleware(provider, parent_on_enqueue=True)]
    )
    try:

        @app.task(queue="q")
        def work() -> None: ...

        ref = work.enqueue()
        with running(make_worker(app)):
            wait_job(app, ref, state=JobState.COMPLETED)
            [consumer] = wait_spans(exporter, SpanKind.CONSUMER, 1)
    finally:
        app.close()
    [producer] = spans(exporter, SpanKind.PRODUCER)
    producer_ctx = producer.get_span_context()
    assert producer_ctx is not None
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer_ctx.span_id
    assert [ids(link.context) for link in consumer.links] == [ids(producer_ctx)]


def test_a_job_enqueued_without_tracing_runs_in_a_span_without_links(
    url: str, prefix: str, app: redisq.App, exporter: InMemorySpanExporter
) -> None:
    # Given a job enqueued by an app without the middleware
    plain = redisq.App(url, prefix=prefix)
    try:

        @plain.task(queue="q", name="job")
        def job_plain() -> None: ...

        ref = job_plain.enqueue()
    finally:
        plain.close()

    @app.task(queue="q", name="job")
    def job_traced() -> None: ...

    # When a traced worker runs it
    with running(make_worker(app)):
        wait_job(app, redisq.JobRef(ref.job, app), state=JobState.COMPLETED)
        [consumer] = wait_spans(exporter, SpanKind.CONSUMER, 1)
    assert list(consumer.links) == []


# ------------------------------------------------------------------------------ the record


def test_without_tracing_the_record_holds_nothing_extra(
    url: str, prefix: str, provider: TracerProvider
) -> None:
    # Given the same job enqueued by an app without tracing, and by one whose tracer is a
    # no-op (OpenTelemetry installed but not set up), at the same Redis time
    clock = [1_800_000_000_000]
    records: list[bytes] = []
    for middleware in ([], [TracingMiddleware(trace.NoOpTracerProvider())]):
        app = redisq.App(url, prefix=prefix, clock=lambda: clock[0], middleware=middleware)
        try:

            @app.task(queue=f"q{len(records)}", name="t")
            def task(x: int) -> None: ...

            ref = task.options(id="job-1").enqueue(5)
            records.append(raw_record(app, prefix, f"q{len(records)}", ref.id))
            assert app.store.get(ref.queue, ref.id).trace_context is None  # type: ignore[union-attr]
        finally:
            app.close()
    # Then both records are byte for byte the same, the payload blob plain msgpack
    assert records[0] == records[1]
    assert unpack_record(records[0])["payload"] == msgpack.packb({"args": [5], "kwargs": {}})
    # And a traced one differs only by the trace context in front of the payload
    app = redisq.App(
        url, prefix=prefix, clock=lambda: clock[0], middleware=[TracingMiddleware(provider)]
    )
    try:

        @app.task(queue="q2", name="t")
        def traced(x: int) -> None: ...

        ref = traced.options(id="job-1").enqueue(5)
        record = raw_record(app, prefix, "q2", ref.id)
        text = app.store.get("q2", ref.id).trace_context["traceparent"]  # type: ignore[union-attr,index]
    finally:
        app.close()
    plain, with_trace = unpack_record(records[0]), unpack_record(record)
    assert with_trace.pop("payload") == pack_trace(text, plain.pop("payload"))
    assert with_trace == plain
    assert len(record) - len(records[0]) == 3 + 55


BAD_CONTEXTS: list[tuple[Any, str]] = [
    ("00-" + "a" * 32 + "-" + "b" * 16 + "-01", "trace_context"),  # not a dict
    ({"traceparent": "x" * 5000}, "trace_context.traceparent"),
    ({"traceparent": PARENT.upper()}, "trace_context.traceparent"),
    ({"traceparent": PARENT + "-extra"}, "trace_context.traceparent"),
    ({"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"}, "trace_context.traceparent"),
    (
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01"},
        "trace_context.traceparent",
    ),
    ({"traceparent": "ff" + PARENT[2:]}, "trace_context.traceparent"),
    ({"traceparent": 12}, "trace_context.traceparent"),
    ({"traceparent": PARENT, "tracestate": "a=b\nj3 forged"}, "trace_context.tracestate"),
    ({"traceparent": PARENT, "tracestate": "a=" + "b" * 600}, "trace_context.tracestate"),
    ({"traceparent": PARENT, "tracestate": "a=\u00e9"}, "trace_context.tracestate"),
    ({"traceparent": PARENT, "baggage": "user=1"}, "trace_context.baggage"),
    ({"tracestate": "a=b"}, "trace_context.traceparent"),
]


@pytest.mark.parametrize(("value", "field"), BAD_CONTEXTS)
def test_a_hostile_trace_context_is_refused_and_nothing_written(
    url: str, prefix: str, value: Any, field: str
) -> None:
    store = redisq.connect(url, prefix=prefix)
    try:
        with pytest.raises(redisq.InvalidArgument) as caught:
            store.enqueue("q", 1, trace_context=value)
        assert caught.value.field == field
        with pytest.raises(redisq.InvalidArgument) as many:
            store.enqueue_many("q", [1, 2], trace_context=value)
        assert many.value.field == "options." + field
        with pytest.raises(redisq.InvalidArgument) as deps:
            store.enqueue("q", 1, trace_context=value, depends_on=["parent-id"])
        assert deps.value.field == field
        assert sum(store.counts("q").values()) == 0
        assert store.redis.keys(f"*{prefix}*") == []
    finally:
        store.close()


def test_the_store_api_takes_a_trace_context_for_every_path(url: str, prefix: str) -> None:
    store = redisq.connect(url, prefix=prefix)
    carrier = {"traceparent": PARENT, "tracestate": "k=v"}
    try:
        one = store.enqueue("q", 1, trace_context=carrier)
        many = store.enqueue_many("q", [redisq.Spec(2, priority=3), 3], trace_context=carrier)
        parent = store.enqueue("q", 4)
        child = store.enqueue("q", 5, trace_context=carrier, depends_on=[parent])
        for job in (one, *many, child):
            assert job.trace_context == carrier
            read = store.get("q", job.id)
            assert read is not None
            assert read.trace_context == carrier
            assert read.payload == job.payload
        assert parent.trace_context is None
        # And a claim reads it too (the worker's path)
        claimed = store.claim("q", worker="w", count=10, lease_ms=30_000)
        assert {j.id: j.trace_context for j in claimed} == {
            one.id: carrier,
            many[0].id: carrier,
            many[1].id: carrier,
            parent.id: None,
        }
    finally:
        store.close()


def test_a_forged_trace_context_in_a_record_is_ignored(
    app: redisq.App, prefix: str, exporter: InMemorySpanExporter
) -> None:
    @app.task(queue="q")
    def work() -> str:
        return "ran"

    # Given jobs whose stored trace context is not a valid one (written around the client)
    ref = work.enqueue()
    key = f"{{{prefix}:q}}:jobs"
    record = raw_record(app, prefix, "q", ref.id)
    payload = msgpack.packb({"args": [], "kwargs": {}})
    fields = unpack_record(record)
    for forged in (b"not-a-traceparent", b"\xff\xfe" + b"x" * 53, PARENT.encode() + b"\n\x01"):
        fields["payload"] = bytes((0xC1, 0, len(forged))) + forged + payload
        app.store.redis.hset(key, ref.id, _pack(fields))
        job = app.store.get("q", ref.id)
        # Then it reads as no trace context, the payload intact
        assert job is not None
        assert job.trace_context is None
        assert job.payload == {"args": [], "kwargs": {}}
        assert link_context(job) is None
    # And a worker runs the job, in a span without links
    with running(make_worker(app)):
        wait_job(app, ref, state=JobState.COMPLETED)
        [consumer] = wait_spans(exporter, SpanKind.CONSUMER, 1)
    assert list(consumer.links) == []


def test_a_trace_context_length_past_the_blob_is_a_payload_error(url: str, prefix: str) -> None:
    store = redisq.connect(url, prefix=prefix)
    try:
        job = store.enqueue("q", 1)
        key = f"{{{prefix}:q}}:jobs"
        fields = unpack_record(store.redis.hget(key, job.id))
        fields["payload"] = b"\xc1\xff\xff" + fields["payload"]
        store.redis.hset(key, job.id, _pack(fields))
        with pytest.raises(redisq.errors.SerializationError) as caught:
            store.get("q", job.id)
        assert caught.value.field == "payload"
    finally:
        store.close()


def _pack(fields: dict[str, bytes]) -> bytes:
    from redisq._core.records import pack_record

    return pack_record(fields)


# ------------------------------------------------------------------------------ helpers


def test_current_trace_context_is_the_current_spans(provider: TracerProvider) -> None:
    assert current_trace_context() is None
    with provider.get_tracer("t").start_as_current_span("s") as span:
        ctx = span.get_span_context()
        assert current_trace_context() == {
            "traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
        }


def test_without_opentelemetry_the_middleware_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(redisq.MissingExtra) as caught:
        TracingMiddleware()
    assert caught.value.extra == "tracing"
    assert caught.value.name == "opentelemetry"
    assert "pip install 'redisq[tracing]'" in str(caught.value)
    with pytest.raises(redisq.MissingExtra):
        current_trace_context()


def test_redisq_imports_and_enqueues_without_opentelemetry(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "import redisq, redisq.tracing\n"
        "app = redisq.App()\n"
        "ref = app.task(queue='q', name='t')(lambda: None).enqueue()\n"
        "print(ref.job.trace_context)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "None\n"


def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "tracing.md"
    [code] = re.findall(r"```python\n(.*?)```", docs.read_text(), re.DOTALL)
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    producer = next(line.split()[3] for line in lines if line.startswith("PRODUCER publish mail"))
    consumers = [line for line in lines if line.startswith("CONSUMER process mail")]
    assert [c.split(" links: ")[1] for c in consumers] == [
        f"['{producer}'] 1 retry",
        f"['{producer}'] 2 completed",
    ]
