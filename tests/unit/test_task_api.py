"""The task API without a server: registration, option validation, backoff, rotation."""

from __future__ import annotations

import random
from typing import Any

import pytest

import redisq
from redisq._core.backoff import as_delay_ms
from redisq._core.rotation import Rotation
from redisq._core.tasks import describe_exception, is_retryable, make_payload, parse_payload
from redisq.app import App


def make_app() -> App:
    return App("memory://unit-task-api", prefix="unit")


# ------------------------------------------------------------------------------ registration


def test_task_registers_plain_and_async_functions_by_module_and_qualname() -> None:
    app = make_app()

    @app.task
    def plain(x: int) -> int:
        return x + 1

    @app.task(queue="other", max_attempts=5, priority=7, store_result=True)
    async def coro(x: int) -> int:
        return x * 2

    qual = "tests.unit.test_task_api.test_task_registers_plain_and_async_functions_by_module_"
    assert plain.name == qual + "and_qualname.<locals>.plain"
    assert (plain.queue, plain.max_attempts, plain.is_async) == ("default", 3, False)
    assert (coro.queue, coro.max_attempts, coro.priority, coro.is_async) == ("other", 5, 7, True)
    assert coro.store_result is True
    assert dict(app.tasks) == {plain.name: plain, coro.name: coro}
    assert app.task_queues == ["default", "other"]
    # calling the task runs the function here
    assert plain(1) == 2


def test_duplicate_task_names_are_refused_and_the_first_task_stays() -> None:
    app = make_app()
    first = app.task(name="jobs.send")(lambda: 1)
    with pytest.raises(redisq.InvalidArgument, match="not yet registered") as info:
        app.task(name="jobs.send")(lambda: 2)
    assert info.value.field == "name"
    assert app.tasks["jobs.send"] is first


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("queue", "", "queue"),
        ("queue", "a{b}", "queue"),
        ("name", "x" * 201, "name"),
        ("max_attempts", 0, "max_attempts"),
        ("max_attempts", 1001, "max_attempts"),
        ("max_attempts", True, "max_attempts"),
        ("lease_ms", 0, "lease_ms"),
        ("lease_ms", 1.5, "lease_ms"),
        ("timeout_ms", 0, "timeout_ms"),
        ("priority", 1001, "priority"),
        ("backoff", 5, "backoff"),
        ("retry_for", ValueError("x"), "retry_for"),
        ("non_retryable", (KeyError, "x"), "non_retryable"),
        ("store_result", 1, "store_result"),
    ],
)
def test_bad_task_options_raise_invalid_argument_and_register_nothing(
    option: str, value: Any, field: str
) -> None:
    app = make_app()
    with pytest.raises(redisq.InvalidArgument) as info:
        app.task(**{option: value})(lambda: None)
    assert info.value.field == field
    assert info.value.value == value
    assert dict(app.tasks) == {}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"id": ""}, "id"),
        ({"unique_key": "a}"}, "unique_key"),
        ({"delay_ms": -1}, "delay_ms"),
        ({"delay_ms": 1.0}, "delay_ms"),
        ({"run_at_ms": -5}, "run_at_ms"),
        ({"delay_ms": 5, "run_at_ms": 10}, "run_at_ms"),
        ({"priority": -1001}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"queue": " q"}, "queue"),
    ],
)
def test_bad_per_call_options_raise_before_anything_is_sent(
    options: dict[str, Any], field: str
) -> None:
    app = make_app()
    task = app.task(name="t")(lambda: None)
    with pytest.raises(redisq.InvalidArgument) as info:
        task.options(**options)
    assert info.value.field == field


def test_options_are_keyword_only() -> None:
    app = make_app()
    task = app.task(name="t")(lambda: None)
    with pytest.raises(TypeError, match="positional"):
        task.options("job-1")  # type: ignore[misc]


def test_context_parameter_is_found_by_name_or_annotation_and_placed_right() -> None:
    app = make_app()
    seen: list[Any] = []

    @app.task
    def first(ctx: Any, x: int) -> None:
        seen.append((ctx, x))

    @app.task
    def typed(x: int, c: redisq.Context, *, y: int = 0) -> None:
        seen.append((x, c, y))

    @app.task
    def keyword(x: int, *, ctx: Any = None) -> None:
        seen.append((x, ctx))

    @app.task
    def none(x: int) -> None:
        seen.append(x)

    assert (first.context_param, first.context_position) == ("ctx", 0)
    assert (typed.context_param, typed.context_position) == ("c", 1)
    assert (keyword.context_param, keyword.context_position) == ("ctx", None)
    assert none.context_param is None
    marker: Any = object()
    first.invoke([1], {}, marker)
    typed.invoke([2], {"y": 3}, marker)
    typed.invoke([], {"x": 4}, marker)
    keyword.invoke([5], {}, marker)
    none.invoke([6], {}, marker)
    assert seen == [(marker, 1), (2, marker, 3), (4, marker, 0), (5, marker), 6]
    first.check_arguments([1], {})
    with pytest.raises(TypeError, match="argument"):
        first.check_arguments([1, 2], {})
    with pytest.raises(TypeError, match="unexpected keyword"):
        none.check_arguments([1], {"z": 2})


SIGNATURES = [
    "def f(): ...",
    "def f(x, y=1): ...",
    "def f(ctx, x): ...",
    "def f(x, ctx, y=2): ...",
    "def f(x, y=0, ctx=None): ...",
    "def f(x, *rest): ...",
    "def f(x, *, y): ...",
    "def f(x, *, ctx=None): ...",
    "def f(ctx, /, x): ...",
    "def f(x, /, y=1, *rest, ctx, **more): ...",
    "def f(a, b, c=1, ctx=None, *rest): ...",
]


@pytest.mark.parametrize("source", SIGNATURES)
def test_argument_check_agrees_with_binding_the_signature(source: str) -> None:
    # check_arguments decides positional-only calls without binding: same verdicts as bind
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    task = make_app().task(name="t")(namespace["f"])
    assert task.signature is not None
    for count in range(5):
        args = list(range(count))
        for kwargs in ({}, {"y": 1}, {"z": 2}):
            full_args, full_kwargs = task._with_context(args, kwargs, None)
            try:
                task.signature.bind(*full_args, **full_kwargs)
            except TypeError:
                with pytest.raises(TypeError, match="argument"):
                    task.check_arguments(args, kwargs)
            else:
                task.check_arguments(args, kwargs)


# ------------------------------------------------------------------------- payload and errors


def test_payload_format_is_args_and_kwargs() -> None:
    assert make_payload((1, "a"), {"k": [1]}) == {"args": [1, "a"], "kwargs": {"k": [1]}}
    assert parse_payload({"args": [1], "kwargs": {"a": 2}}) == ([1], {"a": 2})
    for bad in (None, [1], {"args": [1]}, {"args": 1, "kwargs": {}}, {"args": [], "kwargs": []}):
        with pytest.raises(ValueError, match="not a task call"):
            parse_payload(bad)
    with pytest.raises(redisq.InvalidArgument, match="str keys"):
        make_payload((), {1: 2})  # type: ignore[dict-item]


def test_describe_exception_puts_the_summary_before_the_traceback() -> None:
    def fail() -> None:
        raise KeyError("missing-thing")

    try:
        fail()
    except KeyError as exc:
        text = describe_exception(exc)
    assert text.startswith("KeyError: 'missing-thing'\n\nTraceback (most recent call last):")
    assert "in fail" in text


def test_retryable_follows_retry_for_and_non_retryable() -> None:
    assert is_retryable(ValueError(), None, ())
    assert not is_retryable(KeyError(), None, (KeyError,))
    assert is_retryable(TimeoutError(), (OSError,), ())
    assert not is_retryable(ValueError(), (OSError,), ())
    assert not is_retryable(TimeoutError(), (OSError,), (TimeoutError,))


def test_signals_validate_their_delay_and_live_outside_the_error_tree() -> None:
    assert redisq.Retry().delay_ms is None
    assert redisq.Retry(250).delay_ms == 250
    assert redisq.Snooze(1000).delay_ms == 1000
    assert not issubclass(redisq.TaskSignal, redisq.RedisqError)
    with pytest.raises(redisq.InvalidArgument, match="delay_ms"):
        redisq.Retry(-1)
    with pytest.raises(redisq.InvalidArgument, match="delay_ms"):
        redisq.Snooze(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- backoff


def test_backoff_policies_compute_their_schedules() -> None:
    assert [redisq.backoff.fixed(250)(a) for a in (1, 2, 9)] == [250, 250, 250]
    linear = redisq.backoff.linear(base_ms=100, step_ms=50, cap_ms=220)
    assert [linear(a) for a in (1, 2, 3, 4)] == [100, 150, 200, 220]
    exact = redisq.backoff.exponential(100, factor=3, cap_ms=1000, jitter=0)
    assert [exact(a) for a in (1, 2, 3, 4, 500)] == [100, 300, 900, 1000, 1000]
    random.seed(3)
    default = [redisq.backoff.DEFAULT(a) for a in (1, 2, 3, 20)]
    for delay, mean in zip(default, (1000, 2000, 4000, 900_000), strict=True):
        assert 0.75 * mean <= delay <= 1.25 * mean


@pytest.mark.parametrize(
    ("factory", "kwargs", "field"),
    [
        (redisq.backoff.fixed, {"delay_ms": -1}, "delay_ms"),
        (redisq.backoff.linear, {"step_ms": 1.5}, "step_ms"),
        (redisq.backoff.exponential, {"factor": 0.5}, "factor"),
        (redisq.backoff.exponential, {"jitter": 2}, "jitter"),
    ],
)
def test_backoff_factories_validate(factory: Any, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(redisq.InvalidArgument) as info:
        factory(**kwargs)
    assert info.value.field == field


def test_delays_from_callables_are_checked() -> None:
    assert as_delay_ms(12.4) == 12
    assert as_delay_ms(10**20) == 366 * 24 * 60 * 60 * 1000
    for bad in (-1, float("nan"), "5", None, True):
        with pytest.raises(redisq.InvalidArgument):
            as_delay_ms(bad)


# ---------------------------------------------------------------------------------- rotation


def test_weighted_rotation_is_smooth_and_follows_weights() -> None:
    rotation = Rotation(["a", "b", "c"], {"a": 3, "b": 1})
    picks = [rotation.pick() for _ in range(10)]
    assert picks == ["a", "b", "a", "c", "a", "a", "b", "a", "c", "a"]
    assert picks.count("a") == 6


def test_rotation_plans_split_a_claim_by_weight_and_list_the_rest() -> None:
    rotation = Rotation(["a", "b", "c"], {"a": 2})
    assert rotation.plan(4) == [("a", 2), ("b", 1), ("c", 1)]
    assert rotation.plan(1) == [("a", 1), ("b", 0), ("c", 0)]
    strict = Rotation(["a", "b"], strict=True)
    assert strict.plan(5) == [("a", 5), ("b", 5)]
