"""The root command: every command in the table loads, and help never needs torch or a database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import grimp
from click.testing import CliRunner

from registry.app.main import cli as app_cli
from registry.cli import COMMANDS, build_cli

ROOT = Path(__file__).resolve().parents[2]


def test_every_listed_command_loads_and_has_help() -> None:
    runner = CliRunner()
    listed = app_cli.list_commands(None)  # type: ignore[arg-type]
    assert {"serve", "migrate"} <= set(listed)
    assert set(listed) == set(COMMANDS) | {"serve", "migrate"}
    for name in listed:
        r = runner.invoke(app_cli, [name, "--help"])
        assert r.exit_code == 0, (name, r.output)


def test_the_cli_group_has_no_command_that_needs_the_app() -> None:
    assert not {"serve", "migrate"} & set(build_cli().list_commands(None))  # type: ignore[arg-type]
    graph = grimp.build_graph("registry", cache_dir=None)
    for module in sorted(m for m in graph.modules if m == "registry.cli" or m.startswith("registry.cli.")):
        assert graph.find_shortest_chain(module, "registry.app") is None, module
        for app_module in (m for m in graph.modules if m.startswith("registry.app.")):
            assert graph.find_shortest_chain(module, app_module) is None, (module, app_module)


def test_console_entry_point_is_the_composition_root() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"modelpack": "registry.app.main:main"}
    out = subprocess.run(
        [sys.executable, "-m", "registry", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "serve" in out.stdout and "migrate" in out.stdout


def test_root_help_does_not_import_torch() -> None:
    code = "import sys; from registry.app.main import cli; cli.list_commands(None); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_token_create_is_added_by_the_root_and_ls_revoke_come_from_the_cli() -> None:
    token = app_cli.get_command(None, "token")  # type: ignore[arg-type]
    assert isinstance(token, click.Group) and set(token.commands) == {"create", "ls", "revoke"}
    assert token.commands["create"].callback.__module__ == "registry.app.admin"  # type: ignore[union-attr]


def test_unknown_command_is_a_usage_error() -> None:
    r = CliRunner().invoke(app_cli, ["frobnicate"])
    assert r.exit_code == 2 and "No such command" in r.output
