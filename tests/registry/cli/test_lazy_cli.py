"""The lazy root group: its table names the real commands with their own short help, ``--help`` shows
what click would show with every command loaded, and a process imports only the command it runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from registry.app.main import ROOT_COMMANDS, cli
from registry.cli import COMMANDS, LazyGroup, build_cli, load_command

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "tests" / "conformance" / "unixfs"

# What no process that only lists the commands or computes a file's CID may import.
HEAVY = (
    "aiohttp",
    "sqlalchemy",
    "pydantic",
    "pydantic_settings",
    "rich",
    "multiformats",
    "asyncio",
    "torch",
    "registry.client",
    "registry.settings",
    "registry.app.admin",
    "registry.app.commands",
)


def _root() -> LazyGroup:
    assert isinstance(cli, LazyGroup)
    return cli


def test_the_table_names_each_real_command_with_its_own_short_help() -> None:
    lazy = _root().lazy
    assert set(lazy) == set(COMMANDS) | set(ROOT_COMMANDS)
    for name, entry in lazy.items():
        cmd = load_command(entry.target)
        assert cmd is not None, (name, entry.target)
        assert cmd.name == name
        assert not cmd.hidden
        assert entry.help == cmd.get_short_help_str(limit=10**6), name


@pytest.mark.parametrize("width", [50, 80, 120, 250])
def test_root_help_is_what_click_shows_with_every_command_loaded(width: int) -> None:
    root = _root()
    eager = click.Group(
        "modelpack",
        commands={name: load_command(entry.target) for name, entry in root.lazy.items()},  # type: ignore[misc]
        params=root.params,
        help=root.help,
        context_settings=root.context_settings,
    )

    def render(group: click.Group) -> str:
        settings = {**root.context_settings, "terminal_width": width, "max_content_width": width}
        return group.get_help(click.Context(group, info_name="modelpack", **settings))

    assert render(root) == render(eager)
    assert all(f"  {name} " in render(root) for name in root.lazy)


def test_a_command_added_directly_comes_before_the_table() -> None:
    @click.command("cid", hidden=True)
    def other() -> None:
        """Not the real one."""

    group = build_cli(other)
    assert group.get_command(click.Context(group), "cid") is other
    assert "  cid " not in group.get_help(click.Context(group, info_name="modelpack"))


def _imported_after(args: list[str]) -> tuple[str, list[str]]:
    """stdout of ``modelpack ARGS`` in a fresh interpreter, and the modules it imported from HEAVY or
    from registry.cli besides the command's own."""
    code = f"""
import contextlib, io, json, sys
from registry.app.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main({args!r})
    except SystemExit as e:
        assert not e.code, e.code
heavy = {HEAVY!r}
loaded = sorted(m for m in sys.modules if m in heavy or m.startswith(tuple(h + "." for h in heavy)))
loaded += sorted(m for m in sys.modules if m.startswith("registry.cli.") and m != "registry.cli.cid_cmd")
print(json.dumps([out.getvalue(), loaded]))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    output, loaded = json.loads(proc.stdout)
    return output, loaded


def test_root_help_imports_no_command() -> None:
    output, loaded = _imported_after(["--help"])
    assert "webhook" in output and "serve" in output
    assert loaded == []


def test_cid_of_a_file_imports_neither_the_other_commands_nor_their_dependencies(tmp_path: Path) -> None:
    case = next(c for c in json.loads((VECTORS / "vectors.json").read_text())["files"] if "data_utf8" in c)
    path = tmp_path / "f"
    path.write_bytes(str(case["data_utf8"]).encode())
    output, loaded = _imported_after(["cid", "--cid-version", str(case["cid_version"]), str(path)])
    assert output.strip() == case["cid"]
    assert loaded == []


@pytest.mark.parametrize(
    "prefix", [b"\x12\x20", b"\x01\x55\x12\x20", b"\x01\x70\x12\x20"], ids=["v0", "raw", "dag-pb"]
)
def test_the_cid_text_cid_prints_is_the_spelling_multiformats_gives(prefix: bytes) -> None:
    from multiformats import CID

    from pinner.cids import cid_from_bytes, cid_str

    for seed in range(64):
        raw = prefix + bytes((seed * 7 + i) % 256 for i in range(32))
        assert (
            cid_str(raw)
            == str(cid_from_bytes(raw))
            == str(CID.decode(raw).set(base="base58btc" if raw[0] == 0x12 else "base32"))
        )
