"""Contract tests: the Lua scripts, their headers, the Python ops and the two clients agree.

These need no server: they read lua/ and the package, and check what reviewers would
otherwise check by eye (STYLE L2-L7, V2-V3, A1-A4, E1).
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from redis.crc import key_slot

import redisq
from redisq._core import calls
from redisq._core.schema import SCHEMA_VERSION
from redisq._core.scripts import load_all, lua_dir
from redisq._core.status import ScriptStatus, raise_for_status
from redisq.errors import RedisqError, ScriptReplyError
from redisq.keys import QueueKeys

ROOT = Path(__file__).resolve().parents[2]
LUA = lua_dir()
SPECS = load_all()
#: The core modules that build script calls (every module of redisq/_core).
CORE = sorted((ROOT / "redisq" / "_core").glob("*.py"))


def lua_code(path: Path) -> str:
    """The Lua source without comments (block comments and -- lines)."""
    text = re.sub(r"--\[\[.*?\]\]", "", path.read_text(), flags=re.DOTALL)
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def script_calls() -> dict[str, list[set[str]]]:
    """Map script name -> keyword sets of every script_call(...) in the core."""
    found: dict[str, list[set[str]]] = {}
    for path in CORE:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "script_call"
            ):
                first = node.args[0]
                assert isinstance(first, ast.Constant), f"{path}: script name must be a literal"
                kwargs = {k.arg for k in node.keywords if k.arg is not None}
                found.setdefault(first.value, []).append(kwargs)
    return found


def test_every_status_matches_lua_and_python() -> None:
    text = (LUA / "lib" / "status.lua").read_text()
    in_lua = {m.group(1): int(m.group(2)) for m in re.finditer(r"(\w+) = (\d+),", text)}
    assert in_lua == {s.name: s.value for s in ScriptStatus}


@pytest.mark.parametrize("status", [s for s in ScriptStatus if s.name not in {"OK", "PAUSED"}])
def test_every_refusal_status_maps_to_a_typed_error(status: ScriptStatus) -> None:
    with pytest.raises(RedisqError) as info:
        raise_for_status([status.value, 1, b"x", b"y"], queue="q", job_ids=["j"], tokens=[1])
    assert not isinstance(info.value, ScriptReplyError)


def test_schema_version_matches_lua() -> None:
    text = (LUA / "lib" / "schema.lua").read_text()
    match = re.search(r"SCHEMA_VERSION = '(\d+)'", text)
    assert match is not None
    assert int(match.group(1)) == SCHEMA_VERSION


@pytest.mark.parametrize("name", sorted(SPECS))
def test_header_lists_every_status_the_script_returns(name: str) -> None:
    spec = SPECS[name]
    used = set(re.findall(r"STATUS\.(\w+)", spec.source))
    assert used <= set(spec.statuses), f"{name}.lua returns {used - set(spec.statuses)}"
    assert set(spec.statuses) <= {s.name for s in ScriptStatus}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_header_keys_are_queue_keys_and_argv_matches_the_python_call(name: str) -> None:
    spec = SPECS[name]
    fields = set(QueueKeys.__dataclass_fields__)
    assert set(spec.keys) <= fields, f"{name}: unknown key names {set(spec.keys) - fields}"
    calls = script_calls().get(name)
    assert calls, f"no operation calls {name}.lua"
    argv = {a.name for a in spec.argv}
    for kwargs in calls:
        assert kwargs == argv, f"{name}: Python passes {sorted(kwargs)}, header has {sorted(argv)}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_keys_and_argv_are_bound_once_in_header_order(name: str) -> None:
    code = lua_code(LUA / f"{name}.lua")
    spec = SPECS[name]
    binds = re.findall(r"^local \w+ = KEYS\[(\d+)\]$", code, flags=re.MULTILINE)
    assert [int(n) for n in binds] == list(range(1, len(spec.keys) + 1))
    assert len(re.findall(r"KEYS\[", code)) == len(binds), f"{name} indexes KEYS after binding"
    fixed = [a for a in spec.argv if not a.rest]
    literal = re.findall(r"ARGV\[(\d+)\]", code)
    assert [int(n) for n in literal] == [a.index for a in fixed]


def test_no_lua_file_holds_a_literal_key_name_or_a_keyspace_scan() -> None:
    for path in sorted(LUA.rglob("*.lua")):
        code = lua_code(path)
        for literal in re.findall(r"'([^']*)'", code):
            assert ":" not in literal, f"{path.name}: '{literal}'"
            assert "{" not in literal, f"{path.name}: '{literal}'"
        assert not re.search(r"'(KEYS|SCAN)'", code), f"{path.name} scans the keyspace"


@pytest.mark.parametrize("queue", ["q", "emails:high", "naïve queue", "x" * 200, "q-\u00fc:1"])
def test_every_key_of_every_script_lies_in_the_queue_slot(queue: str) -> None:
    keys = QueueKeys.build("redisq", queue)
    slot = key_slot(f"{{redisq:{queue}}}".encode())
    for name in SPECS:
        for key in calls._key_list(name, keys):
            assert key_slot(key.encode()) == slot, (name, key)
    for derived in (keys.memo_prefix + "r1", keys.lock_prefix + "j"):
        assert key_slot(derived.encode()) == slot


def test_sync_and_async_clients_have_the_same_api() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    sync_api, async_api = public(redisq.Store), public(redisq.AsyncStore)
    assert sync_api.keys() == async_api.keys()
    for name, signature in async_api.items():
        assert str(sync_api[name]) == str(signature).replace("AsyncStore", "Store"), name
        assert inspect.iscoroutinefunction(getattr(redisq.AsyncStore, name)), name
        assert not inspect.iscoroutinefunction(getattr(redisq.Store, name)), name
        assert getattr(redisq.Store, name).__doc__ == getattr(redisq.AsyncStore, name).__doc__


def test_the_sync_client_is_generated_from_the_async_one() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_sync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_connect_async_is_a_plain_function() -> None:
    assert not inspect.iscoroutinefunction(redisq.connect_async)


@pytest.mark.slow
def test_the_wheel_carries_exactly_the_tracked_scripts(tmp_path: Path) -> None:
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
        shipped = sorted(
            n.removeprefix("redisq/lua/") for n in archive.namelist() if n.endswith(".lua")
        )
    if shutil.which("git") and (ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "lua"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        tracked = sorted(p.removeprefix("lua/") for p in listed if p.endswith(".lua"))
    else:
        tracked = sorted(str(p.relative_to(LUA)) for p in LUA.rglob("*.lua"))
    assert shipped == tracked
    assert all(not n.startswith("redisq/lua/") or n.endswith(".lua") for n in archive.namelist())


def test_every_script_passes_luacheck(tmp_path: Path) -> None:
    luacheck = shutil.which("luacheck")
    if luacheck is None:
        if os.environ.get("CI") and shutil.which("apt-get"):
            pytest.fail("luacheck is missing: .ci/run installs Debian's lua-check")
        pytest.skip("luacheck is not installed (Debian: apt-get install lua-check)")
    # Check each script as Redis runs it: with its helpers inlined.
    for name, spec in SPECS.items():
        (tmp_path / f"{name}.lua").write_text(spec.source)
    done = subprocess.run(
        [luacheck, "--no-color", "--config", str(ROOT / ".luacheckrc"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
