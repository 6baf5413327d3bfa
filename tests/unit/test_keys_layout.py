"""The key layout is unambiguous: one key, one (prefix, queue, part), one prefix per ACL rule.

Issue 9, point 7: prefix ``mx`` with queue ``a:b`` used the same keys as prefix ``mx:a`` with
queue ``b`` (``{mx:a:b}:...``), so an ACL pattern for one prefix covered another. A prefix may
not hold ':' (nor the glob characters of key patterns) any more.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

import redisq
from redisq._connect import forget_memory
from redisq.cli import main
from redisq.errors import ConfigurationError, InvalidArgument
from redisq.keys import QueueKeys, check_prefix, registry_key
from redisq.supervisor import load_app

#: Names that stress the separators: colons and glob characters in queue names are fine.
PREFIXES = ["redisq", "mx", "mx-a", "m.x", "a_b", "rq", "r q", "é"]
QUEUES = ["b", "a:b", "a", ":", "b:", ":b", "a::b", "x*", "q?[1]", "queues", "meta", "é:ü"]
#: Ids for the per-id parts: any id text, colons included.
IDS = ["1", "a:b", "lock:1", "claim:x", "result:2", "meta", ":"]


def _keys(prefix: str, queue: str) -> dict[str, str]:
    """Every key name of a queue: the fixed parts, and the per-id parts for each of IDS."""
    built = QueueKeys.build(prefix, queue)
    names: dict[str, str] = {}
    for f in fields(built):
        value = getattr(built, f.name)
        if f.name == "queue":
            continue
        if f.name.endswith("_prefix"):
            for job_id in IDS:
                names[f"{f.name}<{job_id}>"] = value + job_id
        else:
            names[f.name] = value
    return names


def _parse(key: str) -> tuple[str, str]:
    """Read (prefix, queue) back from a queue key: the rule README's Keys section states."""
    match = re.fullmatch(r"\{([^:{}]*):([^{}]*)\}:(.+)", key, re.DOTALL)
    assert match, key
    return match.group(1), match.group(2)


def _acl_covers(pattern: str, key: str) -> bool:
    """Redis glob matching of an ACL key pattern (`~...`); our patterns only use '*'."""
    assert not set(pattern.replace("*", "")) & set("?[]\\"), pattern
    return fnmatch.fnmatchcase(key, pattern.replace("[", "[[]"))


def test_the_reported_alias_is_refused() -> None:
    # Given the two layouts the issue found to share keys
    # Then the second can no longer be built: its prefix holds ':'
    assert QueueKeys.build("mx", "a:b").meta == "{mx:a:b}:meta"
    with pytest.raises(ConfigurationError, match="may not hold ':'") as info:
        QueueKeys.build("mx:a", "b")
    message = str(info.value)
    assert "prefix 'mx' with queue 'a:b'" in message  # says why
    assert "prefix='mx-a'" in message  # and what to use instead


def test_every_key_belongs_to_one_prefix_queue_and_part() -> None:
    owner: dict[str, tuple[str, str, str]] = {}
    for prefix, queue in itertools.product(PREFIXES, QUEUES):
        for part, key in _keys(prefix, queue).items():
            assert key not in owner, (key, owner.get(key), (prefix, queue, part))
            owner[key] = (prefix, queue, part)
            assert _parse(key) == (prefix, queue)
    registries = {registry_key(p) for p in PREFIXES}
    assert len(registries) == len(PREFIXES)
    assert not registries & set(owner)  # the registry is never a queue key


def test_the_acl_patterns_of_a_prefix_cover_its_keys_and_no_other() -> None:
    every = {
        key: prefix
        for prefix, queue in itertools.product(PREFIXES, QUEUES)
        for key in _keys(prefix, queue).values()
    }
    every.update({registry_key(p): p for p in PREFIXES})
    for prefix in PREFIXES:
        patterns = [f"{{{prefix}:*", f"{prefix}:queues"]
        covered = {k for k in every if any(_acl_covers(p, k) for p in patterns)}
        assert covered == {k for k, owner in every.items() if owner == prefix}, prefix


@pytest.mark.parametrize("bad", ["mx:a", ":", "a:", "a*", "a?", "a[b]", "a\\b", "redisq:"])
def test_a_prefix_with_a_separator_or_glob_character_is_refused_everywhere(
    bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    openers: list[Any] = [
        lambda: check_prefix(bad),
        lambda: redisq.connect("memory://keys-layout", prefix=bad),
        lambda: redisq.connect_async("memory://keys-layout", prefix=bad),
        lambda: redisq.App(prefix=bad),
        lambda: QueueKeys.build(bad, "q"),
    ]
    for opener in openers:
        with pytest.raises(ConfigurationError, match="may not hold") as info:
            opener()
        assert type(info.value) is ConfigurationError
        assert "e.g. prefix=" in str(info.value)
    (tmp_path / "layout_app.py").write_text("import redisq\napp = redisq.App()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError, match="may not hold"):
        load_app("layout_app:app", prefix=bad)
    # The command line: exit 2 with one line, nothing sent anywhere.
    capsys.readouterr()
    assert main(["stats", "--url", "memory://keys-layout", "--prefix", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("redisq: prefix ")
    assert err.count("\n") == 1


@pytest.mark.parametrize("good", ["redisq", "my-app", "my_app.jobs", "App 2", "é"])
def test_prefixes_without_separators_still_work(good: str) -> None:
    assert check_prefix(good) == good
    url = f"memory://keys-layout-{uuid.uuid4().hex[:12]}"
    try:
        with redisq.connect(url, prefix=good) as store:
            store.enqueue("a:b", {"n": 1}, id="1")
            assert store.get("a:b", "1") is not None
            assert store.queues() == ["a:b"]
    finally:
        forget_memory(url)


@pytest.mark.parametrize("bad", ["{p}", "", " p", 5])
def test_a_prefix_that_is_no_name_stays_an_invalid_argument(bad: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_prefix(bad)
    assert info.value.field == "prefix"
