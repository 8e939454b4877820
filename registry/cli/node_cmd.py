"""``modelpack node add|ls|drain|rm`` and ``modelpack status NS/MODEL@TAG|CID``: the replication side of the CLI.

Both talk to a running daemon over its API (``--registry``, ``MODELPACK_REGISTRY``); managing nodes
needs an admin token (``--token``, ``MODELPACK_TOKEN``).
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from pinner.states import ADDABLE_NODE_KINDS
from registry.cli.options import connect, remote_options
from registry.cli.output import emit, errors, print_json, table
from registry.client import RegistryClient

STATE_STYLE = {"pinned": "green", "pinning": "cyan", "queued": "cyan", "failed": "red", "lost": "red"}


remote = remote_options()


def _parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for t in tags:
        key, sep, value = t.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{t!r} is not KEY=VALUE", param_hint="--tag")
        out[key] = value
    return out


@click.group()
def node() -> None:
    """Register the IPFS nodes packs are replicated to."""


@node.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--kind", type=click.Choice(ADDABLE_NODE_KINDS), default="kubo", show_default=True)
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE, e.g. zone=eu-1 (repeatable).")
@click.option("--basic-auth", help="USER:PASSWORD for a Kubo RPC behind basic auth.")
@click.option("--bearer", envvar="MODELPACK_NODE_TOKEN", help="Bearer token (pinning services need one).")
@remote
def add(
    name: str,
    url: str,
    kind: str,
    tags: tuple[str, ...],
    basic_auth: str | None,
    bearer: str | None,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Add node NAME at URL (e.g. http://127.0.0.1:5001); it is health-checked at once."""
    body: dict[str, Any] = {"name": name, "kind": kind, "url": url, "tags": _parse_tags(tags)}
    if basic_auth and bearer:
        raise click.BadParameter("give --basic-auth or --bearer, not both", param_hint="--bearer")
    if basic_auth:
        user, sep, password = basic_auth.partition(":")
        if not sep:
            raise click.BadParameter("expected USER:PASSWORD", param_hint="--basic-auth")
        body["auth"] = {"type": "basic", "username": user, "password": password}
    elif bearer:
        body["auth"] = {"type": "bearer", "token": bearer}
    with errors(), connect(registry, token) as c:
        out = c.add_node(body)
    if as_json:
        print_json(out)
        return
    click.echo(f"added {out['name']} ({out['kind']}, {out['url']}): {out['state']}")
    if out.get("last_error"):
        click.echo(f"  last error: {out['last_error']}", err=True)


@node.command("ls")
@remote
def ls(registry: str, token: str | None, as_json: bool) -> None:
    """List nodes with their health and replica counts."""
    with errors(), connect(registry, token) as c:
        nodes = c.nodes()
        status = c.replication_status()
    if as_json:
        print_json(nodes)
        return
    if not nodes:
        click.echo(status["message"])
        return
    grid = table("name", "kind", "url", "state", "free", "tags", "replicas")
    for n in nodes:
        state = n["state"] + (" (draining)" if n["draining"] else "")
        free = f"{n['free_space'] / 2**30:.1f} GiB" if n.get("free_space") is not None else "-"
        tags = ",".join(f"{k}={v}" for k, v in sorted(n["tags"].items())) or "-"
        reps = ", ".join(f"{k}:{v}" for k, v in sorted(n["replicas"].items())) or "-"
        grid.add_row(n["name"], n["kind"], n["url"], state, free, tags, reps)
    Console().print(grid)


@node.command("drain")
@click.argument("name")
@click.option("--undo", is_flag=True, help="Stop draining: place on the node again.")
@remote
def drain(name: str, undo: bool, registry: str, token: str | None, as_json: bool) -> None:
    """Move NAME's replicas to other nodes and place nothing new on it."""
    with errors(), connect(registry, token) as c:
        out = c.drain_node(name, not undo)
    emit(as_json, out, lambda: click.echo(f"{name}: {'draining' if out['draining'] else 'in service'}"))


@node.command("rm")
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove even while it holds pinned replicas.")
@remote
def rm(name: str, force: bool, registry: str, token: str | None, as_json: bool) -> None:
    """Forget node NAME (drain it first so its replicas move elsewhere)."""
    with errors(), connect(registry, token) as c:
        out = c.remove_node(name, force)
    emit(as_json, out, lambda: click.echo(f"removed {name} ({out['replicas_dropped']} replica rows dropped)"))


def _pack_cid(c: RegistryClient, ref: str) -> str:
    """A CID as is; NS/MODEL@TAG (or NS/MODEL, meaning @latest) resolved through the pointer API."""
    if "/" not in ref:
        return ref
    name, _, tag = ref.partition("@")
    return str(c.resolve(name, tag or "latest")["cid"])


@click.command()
@click.argument("ref")
@remote
def status(ref: str, registry: str, token: str | None, as_json: bool) -> None:
    """Replica matrix of a pack: REF is NS/MODEL@TAG or a pack CID. Exit 1 when it is not replicated."""
    with errors(), connect(registry, token) as c:
        cid = _pack_cid(c, ref)
        matrix = c.replicas(cid)
    if as_json:
        print_json(matrix)
    else:
        grid = table("unit", title=f"pack {matrix['pack']}")
        grid.add_column("pinned/min")
        for node_name in matrix["nodes"]:
            grid.add_column(node_name)
        for u in matrix["units"]:
            cells = []
            for node_name in matrix["nodes"]:
                st = u["replicas"].get(node_name, "-")
                cells.append(f"[{STATE_STYLE.get(st, 'white')}]{st}[/]" if st != "-" else "-")
            grid.add_row(u["name"], f"{u['pinned']}/{u['min']} (max {u['max']})", *cells)
        Console().print(grid)
        if matrix["embedded_only"]:
            click.echo("no IPFS node configured: the embedded blockstore is the one replica")
        click.echo(
            "replicated" if matrix["satisfied"] else "NOT replicated: some units are below their minimum"
        )
    if not matrix["satisfied"]:
        raise SystemExit(1)
