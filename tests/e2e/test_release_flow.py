"""End to end on the real stack (issue #8): a ``modelpack serve`` daemon on SQLite and on Postgres, three
js-ipfs peers, and the CLI a publisher and a release pipeline would use.

demo-pack -> sign -> publish -> available -> replicated (3 peers) -> validated -> curated, the IPNS record
resolvable on a peer, ``gate`` exits 0, ``pull`` gives identical bytes; then every refusal of the issue
with its state, reason and ``gate`` exit code, ending with a peer lost after curation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.ipns.publish import peer_id_of
from registry.verify.checks import EXIT_CODES
from tests.e2e.stack import Daemon, clean_env, cli, resolve_ipns, trust_key, wait_until
from tests.ipfs_testnode.peers import IpfsPeer, restore_peers
from tests.registry.gate import packs

# A long flow (several validations, replication to three peers): a wider hang guard than the suite's 300 s.
pytestmark = [pytest.mark.ipfs, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def stack(db_url: str, tmp_path: Path, ipfs_peers: list[IpfsPeer]) -> Iterator[tuple[Daemon, dict[str, str]]]:
    daemon = Daemon(tmp_path / "data", db_url, tmp_path / "daemon.log")
    daemon.start()
    try:
        admin = daemon.token("root", "--scope", "admin")
        alice = daemon.token("alice", "--namespace", "acme")
        daemon.add_peers(admin, ipfs_peers)
        env = clean_env() | {"MODELPACK_REGISTRY": daemon.url, "MODELPACK_TOKEN": alice}
        yield daemon, {"admin": admin, "alice": alice, **env}
    finally:
        daemon.stop()


def user_env(env: dict[str, str], token: str | None = None) -> dict[str, str]:
    out = {k: v for k, v in env.items() if k not in ("admin", "alice")}
    if token is not None:
        out["MODELPACK_TOKEN"] = token
    return out


def demo(tmp: Path, name: str, *args: str) -> Path:
    out = tmp / name.replace("/", "_")
    r = cli("demo-pack", str(out), "--name", name, *args)
    assert r.code == 0, r.err
    return out


def shard_bytes(pack: Path) -> dict[str, bytes]:
    return {s["filename"]: (pack / s["filename"]).read_bytes() for s in packs.manifest_of(pack)["shards"]}


def test_publish_to_curated_then_every_refusal(
    stack: tuple[Daemon, dict[str, str]], tmp_path: Path, ipfs_peers: list[IpfsPeer]
) -> None:
    daemon, env = stack
    alice_env = user_env(env)
    admin_env = user_env(env, env["admin"])

    # --- the publisher's key, trusted by the namespace
    trust_key(tmp_path, alice_env, admin_env)

    # --- happy path: demo-pack -> sign -> publish -> ... -> curated
    pack = demo(tmp_path, "acme/tiny")
    assert cli("sign", str(pack), "--key", str(tmp_path / "alice.key")).code == 0
    r = cli("publish", str(pack), "--name", "acme/tiny", "--json", env=alice_env)
    assert r.code == 0, r.err
    cid = json.loads(r.out)["cid"]
    final = daemon.wait_state(cid, "curated")
    assert final["validation"]["verdict"] == "pass"
    _, detail = daemon.get(f"/v1/packs/{cid}")
    path = [h["to"] for h in detail["history"]]
    assert path[:4] == ["received", "available", "validated", "curated"], detail["history"]
    _, matrix = daemon.get(f"/v1/packs/{cid}/replicas")
    assert matrix["satisfied"] and all(u["pinned"] == 3 for u in matrix["units"]), matrix
    _, pointer = daemon.get("/v1/models/acme/tiny/pointers/curated")
    assert pointer["cid"] == cid

    # the IPNS record of acme/tiny@curated resolves on a peer to the pack
    _, channel = daemon.get("/v1/models/acme/tiny/channels/curated")
    assert channel["value"] == f"/ipfs/{cid}"
    pid = peer_id_of(channel["name"])
    wait_until(lambda: resolve_ipns(ipfs_peers[0], pid) == f"/ipfs/{cid}", 60, "the IPNS record on a peer")

    # the release pipeline's gate, and a pull with identical bytes
    junit = tmp_path / "gate.xml"
    r = cli(
        "gate",
        "acme/tiny@curated",
        "--require",
        "curated",
        "--min-replicas",
        "3",
        "--junit",
        str(junit),
        env=alice_env,
    )
    assert r.code == 0, r.out + r.err
    assert junit.read_text().count("<testcase") == 5
    assert cli("gate", str(pack), "--trust-policy", str(_policy(tmp_path, daemon))).code == 0
    dest = tmp_path / "pulled"
    r = cli("pull", "acme/tiny@curated", str(dest), env=alice_env)
    assert r.code == 0, r.err
    assert shard_bytes(dest) == shard_bytes(pack)

    # --- refusals, each with its state, reason and gate exit code
    flipped = demo(tmp_path, "acme/flip")
    packs.apply_defect(flipped, "flip")
    assert cli("gate", str(flipped)).code == EXIT_CODES["invalid"]
    r = cli("publish", str(flipped), "--name", "acme/flip", env=alice_env)
    assert r.code == 1 and "but the manifest says" in r.err, r.out + r.err  # never gets in

    cases = [
        ("nan", "rejected", "non-finite", "smoke_failed"),
        ("shape", "rejected", "shape", "invalid"),
        ("config", "rejected", "lacks", "invalid"),
    ]
    published = {}
    for defect, *_ in cases:
        bad = demo(tmp_path, f"acme/{defect}")
        packs.apply_defect(bad, defect)
        assert cli("sign", str(bad), "--key", str(tmp_path / "alice.key")).code == 0
        r = cli("publish", str(bad), "--name", f"acme/{defect}", "--json", env=alice_env)
        assert r.code == 0, r.err
        published[defect] = json.loads(r.out)["cid"]

    unsigned = demo(tmp_path, "acme/unsigned", "--seed", "2")
    r = cli("publish", str(unsigned), "--name", "acme/unsigned", "--json", env=alice_env)
    published["unsigned"] = json.loads(r.out)["cid"]

    assert cli("keygen", str(tmp_path / "mallory.key")).code == 0  # registered, but not in the policy
    assert cli("key", "add", str(tmp_path / "mallory.key.pub"), env=alice_env).code == 0
    untrusted = demo(tmp_path, "acme/untrusted", "--seed", "3")
    assert cli("sign", str(untrusted), "--key", str(tmp_path / "mallory.key")).code == 0
    r = cli("publish", str(untrusted), "--name", "acme/untrusted", "--json", env=alice_env)
    published["untrusted"] = json.loads(r.out)["cid"]

    big = demo(tmp_path, "acme/big", "--preset", "small")
    assert cli("sign", str(big), "--key", str(tmp_path / "alice.key")).code == 0
    r = cli("publish", str(big), "--name", "acme/big", "--json", env=alice_env)
    published["big"] = json.loads(r.out)["cid"]

    for defect, state, words, kind in cases:
        v = daemon.wait_state(published[defect], state)
        assert words in v["state_reason"], v
        r = cli("gate", published[defect], env=alice_env)
        assert r.code == EXIT_CODES[kind], (defect, r.out)
    for name in ("unsigned", "untrusted"):
        v = daemon.wait_state(published[name], "validated")
        want = "no signatures" if name == "unsigned" else "does not trust"
        wait_until(_reason_has(daemon, published[name], want), 30, f"{name}: {want}")
        r = cli("gate", f"acme/{name}@latest", "--require", "curated", env=alice_env)
        assert r.code == EXIT_CODES["untrusted"], (name, r.out)
        assert daemon.get(f"/v1/models/acme/{name}/pointers/curated")[0] == 404
    v = daemon.wait_state(published["big"], "rejected")
    assert (
        "validation.memory_bytes" in v["state_reason"]
        and v["validation"]["report"]["error_code"] == "pack_too_large"
    )
    assert cli("gate", published["big"], env=alice_env).code == EXIT_CODES["too_big"]

    # --- a curated pack whose replicas fall below the minimum: flagged, pointer withdrawn, history says why
    try:
        ipfs_peers[2].stop()
        v = daemon.wait_state(cid, "validated", timeout=180)
        assert "replication_min 3" in (v["flagged"] or ""), v
        assert daemon.get("/v1/models/acme/tiny/pointers/curated")[0] == 404
        _, hist = daemon.get("/v1/models/acme/tiny/pointers/curated/history")
        assert hist["items"][0]["to_cid"] is None and "replication_min" in hist["items"][0]["reason"]
        r = cli("gate", cid, "--min-replicas", "3", env=alice_env)
        assert r.code == EXIT_CODES["under_replicated"], r.out
        r = cli("gate", cid, "--require", "curated", env=alice_env)  # the flag says why it is not curated
        assert r.code == EXIT_CODES["under_replicated"] and "degraded (under_replicated)" in r.out, r.out
    finally:
        restore_peers(ipfs_peers)


def _policy(tmp: Path, daemon: Daemon) -> Path:
    _, doc = daemon.get("/v1/namespaces/acme/policy/file")
    path = tmp / "acme-policy.json"
    path.write_text(json.dumps(doc))
    return path


def _reason_has(daemon: Daemon, cid: str, words: str) -> Callable[[], bool]:
    return lambda: words in (daemon.state(cid)["state_reason"] or "")
