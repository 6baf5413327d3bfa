"""OpenTelemetry traces of enqueues and job runs (docs/tracing.md); needs ``redisq[tracing]``.

::

    import redisq
    from redisq.tracing import TracingMiddleware

    app = redisq.App("redis://localhost:6379", middleware=[TracingMiddleware()])

- Each enqueue of the task API (``enqueue``, ``enqueue_many`` and their async twins) makes a
  PRODUCER span ("publish <queue>"), and its W3C trace context (traceparent, tracestate) is kept
  in the job's record (`Job.trace_context`; a job enqueued without tracing stores nothing
  extra).
- Each attempt a worker runs makes a CONSUMER span ("process <queue>") linked to the
  enqueue's span: a retry makes a new span, linked to the same enqueue. The span is current
  while the handler runs, so the handler's own spans are its children.
- Attributes follow OpenTelemetry's messaging conventions: ``messaging.system`` "redis"
  (as BullMQ's OpenTelemetry package), ``messaging.destination.name`` (the queue),
  ``messaging.message.id`` (the job id), ``messaging.operation.type`` and ``.name``,
  ``messaging.batch.message_count``,
  ``messaging.client.id`` (the worker); redisq's own under ``messaging.redisq.``: the task
  name, the attempt number and the outcome. A failed attempt records its exception and sets
  the span's status to ERROR with ``error.type``.

Spans go to the tracer provider given, else OpenTelemetry's global one (set up by the
application: an SDK ``TracerProvider`` with its exporters). Without one, every span is a
no-op and nothing is stored in records.

This module imports without OpenTelemetry; `TracingMiddleware` raises `redisq.MissingExtra`
(naming the extra) when it is missing.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from redisq._core.tracectx import check_trace_context
from redisq.errors import InvalidArgument, MissingExtra
from redisq.middleware import Middleware

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

    from redisq.context import Context
    from redisq.middleware import EnqueueRequest, JobOutcome
    from redisq.models import Job

__all__ = ["TracingMiddleware", "current_trace_context", "link_context"]

#: The instrumentation scope of redisq's spans.
SCOPE = "redisq"
SYSTEM = "redis"


def _otel() -> Any:
    """Import OpenTelemetry's API, or raise MissingExtra naming the extra."""
    try:
        import opentelemetry.context
        import opentelemetry.trace
        from opentelemetry.trace.propagation import tracecontext
    except ImportError as exc:
        raise MissingExtra("tracing", "redisq.tracing", "opentelemetry") from exc
    return opentelemetry, tracecontext


def _safe(carrier: dict[str, str]) -> dict[str, str] | None:
    """The carrier if redisq may store it: a tracestate over the limits is dropped (the
    traceparent alone is kept), a traceparent that does not check is not stored at all."""
    try:
        check_trace_context("trace_context", carrier)
        return carrier
    except InvalidArgument:
        pass
    parent = {"traceparent": carrier.get("traceparent", "")}
    try:
        check_trace_context("trace_context", parent)
        return parent
    except InvalidArgument:
        return None


def current_trace_context() -> dict[str, str] | None:
    """The W3C trace context of the current span, for ``store.enqueue(trace_context=...)``
    (enqueues through the store do not pass through the middleware); None without a span.

    Raises:
        MissingExtra: OpenTelemetry is not installed.
    """
    _, tracecontext = _otel()
    carrier: dict[str, str] = {}
    tracecontext.TraceContextTextMapPropagator().inject(carrier)
    return _safe(carrier) if carrier else None


def link_context(job: Job) -> Any:
    """The SpanContext of the enqueue of `job` (to link a span to), or None when the job was
    enqueued without a trace context (or it does not parse)."""
    otel, tracecontext = _otel()
    carrier = job.trace_context
    if not carrier:
        return None
    ctx = tracecontext.TraceContextTextMapPropagator().extract(carrier)
    span_context = otel.trace.get_current_span(ctx).get_span_context()
    return span_context if span_context.is_valid else None


class TracingMiddleware(Middleware):
    """OpenTelemetry spans around the task API's enqueues and the jobs workers run.

    Add it first (the outermost layer), so that its span covers the other hooks::

        app = redisq.App(url, middleware=[TracingMiddleware()])

    Args:
        tracer_provider: where spans go; OpenTelemetry's global provider when None.
        parent_on_enqueue: make each attempt's span a child of the enqueue's span (one trace
            from the request that enqueued to every attempt) instead of the root of a trace of
            its own; it is linked to the enqueue either way.

    Raises:
        MissingExtra: OpenTelemetry is not installed (``pip install 'redisq[tracing]'``).
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, parent_on_enqueue: bool = False
    ) -> None:
        otel, tracecontext = _otel()
        from redisq._version import __version__

        self._trace = otel.trace
        self._context = otel.context
        self._tracer = otel.trace.get_tracer(SCOPE, __version__, tracer_provider)
        self._propagator = tracecontext.TraceContextTextMapPropagator()
        self._parent_on_enqueue = parent_on_enqueue
        self._producer = otel.trace.SpanKind.PRODUCER
        self._consumer = otel.trace.SpanKind.CONSUMER
        self._link = otel.trace.Link
        self._error = otel.trace.StatusCode.ERROR
        # Open spans by their attempt's Context (before_job to after_job, same thread/task).
        self._open: dict[int, tuple[Span, object]] = {}

    # ------------------------------------------------------------------------- enqueue

    def around_enqueue(self, request: EnqueueRequest) -> Generator[None, list[Job], None]:
        """A PRODUCER span around the enqueue; its context goes into the jobs' records."""
        count = len(request.payloads)
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": request.queue,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.redisq.task.name": request.task.name,
        }
        if request.many:
            attributes["messaging.batch.message_count"] = count
        given = request.options.get("id")
        if not request.many and isinstance(given, str):
            attributes["messaging.message.id"] = given
        with self._tracer.start_as_current_span(
            f"publish {request.queue}", kind=self._producer, attributes=attributes
        ) as span:
            if span.get_span_context().is_valid:
                carrier: dict[str, str] = {}
                self._propagator.inject(carrier)
                safe = _safe(carrier) if carrier else None
                if safe is not None:
                    request.options["trace_context"] = safe
            jobs = yield
            if len(jobs) == 1 and span.is_recording():
                span.set_attribute("messaging.message.id", jobs[0].id)

    # ------------------------------------------------------------------------- jobs

    def before_job(self, ctx: Context) -> None:
        """Start the attempt's CONSUMER span, linked to the enqueue, and make it current."""
        job = ctx.job
        links = None
        parent = None
        carrier = job.trace_context
        if carrier:
            extracted = self._propagator.extract(carrier)
            span_context = self._trace.get_current_span(extracted).get_span_context()
            if span_context.is_valid:
                links = [self._link(span_context)]
                if self._parent_on_enqueue:
                    parent = extracted
        span = self._tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=self._consumer,
            links=links,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.destination.name": job.queue,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.message.id": job.id,
                "messaging.client.id": ctx.worker,
                "messaging.redisq.task.name": job.name or "",
                "messaging.redisq.attempt": job.attempts,
                "messaging.redisq.max_attempts": job.max_attempts,
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        self._open[id(ctx)] = (span, token)

    def after_job(self, ctx: Context, outcome: JobOutcome) -> None:
        """End the attempt's span with its outcome (and error)."""
        opened = self._open.pop(id(ctx), None)
        if opened is None:
            return
        span, token = opened
        try:
            if span.is_recording():
                span.set_attribute("messaging.redisq.outcome", outcome.status)
                if outcome.delay_ms is not None:
                    span.set_attribute("messaging.redisq.delay_ms", outcome.delay_ms)
                if outcome.status in ("retry", "dead"):
                    error = outcome.error
                    if error is not None:
                        span.record_exception(error)
                        span.set_attribute("error.type", type(error).__qualname__)
                    else:
                        span.set_attribute("error.type", "redisq.refused")
                    message = outcome.message.partition("\n")[0][:200]
                    span.set_status(self._error, message or None)
        finally:
            span.end()
            # Restore the context before_job replaced (OpenTelemetry logs, never raises, when
            # the handler's thread or task changed it in between).
            self._context.detach(token)
