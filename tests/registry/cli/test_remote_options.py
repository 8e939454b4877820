"""Every remote command takes ``--registry`` / ``MODELPACK_REGISTRY`` with one default, through one client;
``gate --wait`` asks again while the pack is not ready."""

from __future__ import annotations

import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from registry.app.main import cli
from registry.client import DEFAULT_REGISTRY
from registry.verify.checks import EXIT_CODES
from tests.registry.api.live import LiveServer
from tests.registry.cli.clihelp import local_token, run, write_pack

REMOTE = {
    "ls", "show", "pull", "publish", "pointer get", "pointer set", "pointer history", "token ls", "token revoke",
    "key add", "key ls", "key revoke", "policy show", "policy set", "node add", "node ls", "node drain",
    "node rm", "status", "validate", "curate", "gate", "verify",
    "pin add", "pin ls", "pin show", "pin replace", "pin rm", "diff", "events",
    "webhook add", "webhook ls", "webhook rm", "webhook test", "webhook deliveries", "webhook redeliver",
    "webhook rotate", "webhook enable",
}  # fmt: skip


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name in group.list_commands(None):  # type: ignore[arg-type]
        cmd = group.get_command(None, name)  # type: ignore[arg-type]
        assert cmd is not None
        if isinstance(cmd, click.Group):
            out |= _commands(cmd, f"{prefix}{name} ")
        else:
            out[f"{prefix}{name}"] = cmd
    return out


def test_every_remote_command_has_the_same_registry_and_token_options() -> None:
    with_registry = {}
    for name, cmd in _commands(cli).items():
        params = {p.name: p for p in cmd.params}
        if "registry" in params:
            with_registry[name] = (params["registry"], params["token"])
    assert set(with_registry) == REMOTE
    for name, (registry, token) in with_registry.items():
        assert isinstance(registry, click.Option) and isinstance(token, click.Option)
        assert (registry.default, registry.envvar, token.envvar) == (
            DEFAULT_REGISTRY,
            "MODELPACK_REGISTRY",
            "MODELPACK_TOKEN",
        ), name


@pytest.mark.parametrize(
    "args", [["ls"], ["key", "ls"], ["gate", "acme/tiny@latest"], ["verify", "acme/tiny@latest"]]
)
def test_a_malformed_registry_url_is_a_usage_error(args: list[str]) -> None:
    r = CliRunner().invoke(cli, [*args, "--registry", "ftp://example"])
    assert r.exit_code == 2 and "is not http(s)://HOST[:PORT]" in r.output, r.output


def test_verify_and_gate_of_a_folder_never_call_the_registry(tmp_path: Path) -> None:
    pack = write_pack(tmp_path / "pack")
    env = {"MODELPACK_REGISTRY": "http://127.0.0.1:9"}  # nothing listens there
    r = CliRunner().invoke(cli, ["verify", str(pack), "--skip-signatures"], env=env)
    assert r.exit_code == 0 and "OK 2 shard(s) and 0 file(s) verified" in r.output, r.output
    r = CliRunner().invoke(cli, ["gate", str(pack), "--no-smoke"], env=env)
    assert "unreachable" not in r.output and "FAIL shards" not in r.output, r.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_gate_wait_asks_again_only_while_the_verdict_is_pending(server: LiveServer, tmp_path: Path) -> None:
    started = time.monotonic()
    r = run(server, "gate", "acme/tiny@curated", "--wait", "1.5")  # no such pointer (yet): 14 is pending
    assert r.exit_code == EXIT_CODES["not_found"] and time.monotonic() - started >= 1.0, r.output
    tok = local_token(server.settings, "--publisher", "alice", "--namespace", "acme")["token"]
    r = run(server, "publish", str(write_pack(tmp_path / "pack")), "--name", "acme/tiny", token=tok)
    assert r.exit_code == 0, r.output
    started = time.monotonic()
    r = run(server, "gate", "acme/tiny@latest", "--wait", "120")  # unsigned: a verdict, not a wait
    assert r.exit_code == EXIT_CODES["untrusted"] and time.monotonic() - started < 60, r.output
    started = time.monotonic()
    r = CliRunner().invoke(
        cli, ["gate", "acme/tiny@latest", "--wait", "120", "--registry", "http://127.0.0.1:9"]
    )
    assert r.exit_code == EXIT_CODES["unreachable"] and time.monotonic() - started < 60, r.output
