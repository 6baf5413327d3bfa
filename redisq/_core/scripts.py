"""Load the Lua scripts: inline includes, parse headers, hash the final text.

Each script in ``lua/`` is one state transition. Its header (STYLE L2) lists KEYS and ARGV by
name; `ScriptSpec` keeps those names so operations bind arguments by name and never order
keys by hand. The wheel ships the scripts as ``redisq/lua``; a source checkout reads ``lua/``
at the repository root.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from redisq.errors import ScriptReplyError

__all__ = ["ArgSpec", "ScriptSpec", "load_all", "lua_dir", "script"]

_INCLUDE = re.compile(r'^--- @include "([\w/]+)"\s*$', re.MULTILINE)
_TITLE = re.compile(r"^--\[\[ (\w+): ")
_KEY = re.compile(r"^\s*KEYS\[(\d+)\]\s+(\w+)\s+(\w+)", re.MULTILINE)
_ARG = re.compile(r"^\s*ARGV\[(\d+)(\+?)\]\s+(\w+)\s+(\w+)", re.MULTILINE)
#: The status list; it may go on over indented lines that hold only names and commas.
_STATUS = re.compile(r"^\s*Status:\s*(.+(?:\n[ \t]+[A-Z_]+(?:,[ \t]*[A-Z_]+)*)*)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """One ARGV entry of a script header; `rest` marks the variadic tail (``ARGV[n+]``)."""

    index: int
    name: str
    kind: str
    rest: bool


@dataclass(frozen=True, slots=True)
class ScriptSpec:
    """A loaded script: its final source (includes inlined), SHA1 and parsed header."""

    name: str
    source: str
    sha: str
    keys: tuple[str, ...]
    argv: tuple[ArgSpec, ...]
    statuses: tuple[str, ...]


def lua_dir() -> Path:
    """Find the scripts: inside the installed package, else in the source checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "lua", here.parent / "lua"):
        if (candidate / "lib").is_dir():
            return candidate
    raise FileNotFoundError(f"redisq's Lua scripts are missing (looked in {here / 'lua'})")


def _inline(root: Path, text: str, seen: set[str], stack: tuple[str, ...]) -> str:
    """Replace each include line by the helper's text, once per script, depth first."""

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in stack:
            raise ScriptReplyError(f"include cycle: {' -> '.join((*stack, name))}")
        if name in seen:
            return ""
        path = root / f"{name}.lua"
        if not path.is_file():
            raise FileNotFoundError(f"included Lua helper {name!r} not found at {path}")
        seen.add(name)
        body = _inline(root, path.read_text(), seen, (*stack, name))
        return body.rstrip("\n") + "\n"

    return _INCLUDE.sub(expand, text)


def _parse(name: str, source: str, header_text: str) -> ScriptSpec:
    title = _TITLE.match(header_text)
    if not title or title.group(1) != name:
        raise ScriptReplyError(f"{name}.lua must open with a header '--[[ {name}: ...'")
    header = header_text.split("]]", 1)[0]
    keys = tuple(m.group(2) for m in _KEY.finditer(header))
    key_numbers = [int(m.group(1)) for m in _KEY.finditer(header)]
    if key_numbers != list(range(1, len(keys) + 1)):
        raise ScriptReplyError(f"{name}.lua: KEYS in the header must be numbered 1..n")
    argv = tuple(
        ArgSpec(int(m.group(1)), m.group(3), m.group(4), m.group(2) == "+")
        for m in _ARG.finditer(header)
    )
    if [a.index for a in argv] != list(range(1, len(argv) + 1)):
        raise ScriptReplyError(f"{name}.lua: ARGV in the header must be numbered 1..n")
    status = _STATUS.search(header)
    statuses = tuple(s.strip() for s in status.group(1).split(",")) if status else ()
    sha = hashlib.sha1(source.encode()).hexdigest()
    return ScriptSpec(name, source, sha, keys, argv, statuses)


@cache
def load_all() -> dict[str, ScriptSpec]:
    """Load every transition script in lua/ (helpers in lua/lib/ are only included)."""
    root = lua_dir()
    specs: dict[str, ScriptSpec] = {}
    for path in sorted(root.glob("*.lua")):
        text = path.read_text()
        source = _inline(root, text, set(), (path.stem,))
        specs[path.stem] = _parse(path.stem, source, text)
    return specs


def script(name: str) -> ScriptSpec:
    """Return the loaded script called `name`."""
    return load_all()[name]
