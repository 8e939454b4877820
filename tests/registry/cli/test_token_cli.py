"""``modelpack token ls|revoke`` against a live registry: a publisher sees and revokes its own tokens."""

from __future__ import annotations

import json

import pytest

from registry.app.main import cli
from registry.cli.token_cmd import token
from tests.registry.api.live import LiveServer
from tests.registry.cli.clihelp import local_token, run


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ls_lists_own_tokens_and_revoke_stops_one_at_once(server: LiveServer) -> None:
    first = local_token(server.settings, "--publisher", "alice", "--namespace", "acme")
    second = local_token(server.settings, "--publisher", "alice", "--description", "ci")
    other = local_token(server.settings, "--publisher", "bob")

    r = run(server, "token", "ls", "--json", token=first["token"])
    assert r.exit_code == 0, r.output
    listed = json.loads(r.output)
    assert [t["id"] for t in listed] == [first["id"], second["id"]]  # bob's token is not alice's to see
    assert all("token" not in t for t in listed) and listed[1]["description"] == "ci"
    human = run(server, "token", "ls", token=first["token"]).output
    assert first["token"][:8] in human and first["token"] not in human

    r = run(server, "token", "revoke", str(second["id"]), token=first["token"])
    assert r.exit_code == 0 and f"token {second['id']}" in r.output and "revoked" in r.output
    r = run(server, "token", "ls", token=second["token"])
    assert r.exit_code == 1 and "Traceback" not in r.output and "revoked" in r.output.lower()
    revoked = json.loads(run(server, "token", "ls", "--json", token=first["token"]).output)
    assert [t["revoked_at"] is not None for t in revoked] == [False, True]

    r = run(server, "token", "revoke", str(other["id"]), token=first["token"])
    assert r.exit_code == 1 and f"no token with id {other['id']}" in r.output
    assert (
        json.loads(run(server, "token", "ls", "--json", token=other["token"]).output)[0]["revoked_at"] is None
    )


def test_the_token_group_is_the_root_commands_token() -> None:
    assert cli.get_command(None, "token") is token  # type: ignore[arg-type]
    assert {"ls", "revoke"} <= set(token.commands)


def test_token_create_offers_every_scope_and_combines_them() -> None:
    create = cli.get_command(None, "token").commands["create"]  # type: ignore[union-attr, arg-type]
    scope = next(p for p in create.params if p.name == "scopes")
    assert list(scope.type.choices) == ["read", "publish", "admin", "pin"]
    assert scope.multiple


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_token_create_issues_read_and_pin_tokens(server: LiveServer) -> None:
    issued = local_token(server.settings, "--publisher", "ro", "--scope", "read", "--scope", "pin")
    assert issued["scopes"] == ["read", "pin"] and issued["namespaces"] is None
    r = run(server, "token", "ls", "--json", token=issued["token"])
    assert r.exit_code == 0 and json.loads(r.output)[0]["scopes"] == ["read", "pin"]
