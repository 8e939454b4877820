"""The root command: every command in the table loads, and help never needs torch or a database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from registry.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[2]


def test_every_listed_command_loads_and_has_help() -> None:
    runner = CliRunner()
    listed = cli.list_commands(None)  # type: ignore[arg-type]
    assert {"serve", "migrate"} <= set(listed)
    for name in listed:
        assert name in COMMANDS
        r = runner.invoke(cli, [name, "--help"])
        assert r.exit_code == 0, (name, r.output)


def test_root_help_does_not_import_torch() -> None:
    code = "import sys; from registry.cli import cli; cli.list_commands(None); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_command_is_a_usage_error() -> None:
    r = CliRunner().invoke(cli, ["frobnicate"])
    assert r.exit_code == 2 and "No such command" in r.output
