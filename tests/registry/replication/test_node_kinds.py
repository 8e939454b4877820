"""One list of node kinds: the enum, the migration's CHECK, the table model, the API, the CLI and the errors agree."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.states import ADDABLE_NODE_KINDS, NodeKind
from registry.api.nodes import NodeIn
from registry.cli.node_cmd import add as add_cmd
from registry.db.models import IpfsNode
from registry.errors import BadRequest
from registry.replication.nodes import NodeRegistry

MIGRATION = Path(__file__).resolve().parents[3] / "migrations" / "versions" / "0001_initial_schema.py"


def _migration_enum(name: str) -> set[str]:
    """The values of the named ``sa.Enum`` (a CHECK constraint) in the initial migration."""
    for call in ast.walk(ast.parse(MIGRATION.read_text(encoding="utf-8"))):
        if not (
            isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "Enum"
        ):
            continue
        if any(
            k.arg == "name" and isinstance(k.value, ast.Constant) and k.value.value == name
            for k in call.keywords
        ):
            return {a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    raise AssertionError(f"no sa.Enum named {name} in {MIGRATION.name}")


def test_the_enum_is_the_migrations_check_and_the_models() -> None:
    kinds = {k.value for k in NodeKind}
    assert _migration_enum("node_kind") == kinds
    column = IpfsNode.__table__.c.kind.type
    assert isinstance(column, sa.Enum)
    assert set(column.enums) == kinds and column.name == "node_kind"


def test_every_kind_but_the_embedded_store_can_be_added() -> None:
    assert set(ADDABLE_NODE_KINDS) == {k.value for k in NodeKind} - {NodeKind.EMBEDDED.value}


def test_the_api_and_the_cli_offer_the_addable_kinds() -> None:
    assert NodeIn.model_json_schema()["properties"]["kind"]["enum"] == list(ADDABLE_NODE_KINDS)
    for kind in ADDABLE_NODE_KINDS:
        assert NodeIn.model_validate({"name": "n", "url": "http://127.0.0.1:5001", "kind": kind}).kind == kind
    with pytest.raises(ValueError, match=", ".join(ADDABLE_NODE_KINDS)):
        NodeIn.model_validate({"name": "n", "url": "http://127.0.0.1:5001", "kind": "ftp"})
    option = next(p for p in add_cmd.params if p.name == "kind")
    assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == ADDABLE_NODE_KINDS


async def test_the_registry_names_the_addable_kinds_when_refusing_one(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    registry = NodeRegistry(sessions, bytes(32), allowed_hosts=("127.0.0.1",))
    with pytest.raises(BadRequest, match=", ".join(ADDABLE_NODE_KINDS)):
        await registry.add("n", "ftp", "http://127.0.0.1:5001")
    with pytest.raises(BadRequest, match="always there"):
        await registry.add("n", NodeKind.EMBEDDED.value, "http://127.0.0.1:5001")
