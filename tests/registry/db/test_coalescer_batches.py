"""Batches (registry.db.coalesce.Coalescer.run): the reads of a kind that wait while one runs are read together,
in one ``many(keys)``, each caller getting its own key's value; a batch is joined only before it starts; a
batch that fails, or leaves a key out, fails its callers instead of hanging them; and on real Postgres the
batched pointer resolve gives exactly what each resolve alone gives."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_core.format.pack import load_manifest
from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from registry.accounts.auth import AuthService
from registry.db.coalesce import Coalescer
from registry.db.fastread import FastReads
from registry.errors import NotFound, RegistryError
from registry.names import ModelRef
from registry.packs.blobs import BlobService
from registry.packs.browse import BrowseService, content_memo
from registry.packs.pointers import PointerService
from registry.packs.publish import PublishService
from tests.registry.api import helpers
from tests.registry.db.test_coalesced_reads import Gate, until

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


class Source:
    """``one`` and ``many`` over a dict, counting calls; ``many`` can be held, fail or leave keys out."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)
        self.ones: list[str] = []
        self.batches: list[list[str]] = []
        self.hold: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.drop: str | None = None

    def one(self, key: str) -> Callable[[], Any]:
        async def read() -> Any:
            self.ones.append(key)
            return self.values.get(key)

        return read

    async def many(self, keys: list[str]) -> dict[str, Any]:
        self.batches.append(sorted(keys))
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            raise self.fail
        return {k: self.values.get(k) for k in keys if k != self.drop}


def run(c: Coalescer, src: Source, key: str) -> asyncio.Task[Any]:
    return asyncio.ensure_future(c.run("kind", key, src.one(key), src.many))


async def test_reads_that_wait_for_a_running_one_are_read_in_one_batch() -> None:
    c, src, gate = Coalescer(4), Source({"a": 1, "b": 2, "c": 3}), Gate()
    first = asyncio.ensure_future(c.run("kind", "a", gate.read, src.many))  # nothing runs: one(), at once
    await until(lambda: gate.running == 1, "the first read runs")
    waiting = [run(c, src, k) for k in ("b", "c", "b", "missing", "a")]  # slots are free, but the kind runs
    await until(lambda: "kind" in c.queued(), "a batch is pending")
    other = Source({"x": 9})
    assert await asyncio.ensure_future(c.run("other", "x", other.one("x"), other.many)) == 9  # another kind
    assert src.batches == [] and src.ones == []
    gate.opened.set()
    assert await first == "held"
    assert await asyncio.gather(*waiting) == [2, 3, 2, None, 1]
    assert src.batches == [["a", "b", "c", "missing"]]  # one statement, each key once
    await until(lambda: not c.busy(), "nothing runs")
    assert await run(c, src, "c") == 3 and src.ones == ["c"]  # idle again: one() at once


async def test_a_batch_that_started_is_not_joined() -> None:
    c, src, gate = Coalescer(4), Source({"a": 1, "b": 2}), Gate()
    first = asyncio.ensure_future(c.run("kind", "a", gate.read, src.many))
    await until(lambda: gate.running == 1, "the first read runs")
    src.hold = asyncio.Event()
    early = run(c, src, "a")
    await until(lambda: "kind" in c.queued(), "a batch is pending")
    gate.opened.set()
    await first
    await until(lambda: len(src.batches) == 1, "the batch has started")
    late = run(c, src, "a")  # same key, but its batch has started: it waits for the next
    await until(lambda: "kind" in c.queued(), "the next batch is pending")
    src.values["a"] = 10
    src.hold.set()
    assert await early == 10 and await late == 10
    assert src.batches == [["a"], ["a"]]


async def test_a_failed_batch_fails_its_callers_and_a_key_left_out_fails_them_too() -> None:
    c, src, gate = Coalescer(1), Source({"a": 1, "b": 2}), Gate()
    held = asyncio.ensure_future(c.run("hold", "h", gate.read, src.many))
    await until(lambda: gate.running == 1, "the only slot is held")
    src.fail = RuntimeError("the database went away")
    callers = [run(c, src, k) for k in ("a", "b")]
    gone = run(c, src, "a")
    await until(lambda: "kind" in c.queued(), "a batch is pending")
    gone.cancel()  # a caller that leaves cancels nothing, and its error is retrieved all the same
    gate.opened.set()
    await held
    for t in callers:
        with pytest.raises(RuntimeError, match="went away"):
            await t
    src.fail, src.drop = None, "b"
    gate2 = Gate()
    held = asyncio.ensure_future(c.run("hold", "h", gate2.read, src.many))
    await until(lambda: gate2.running == 1, "the slot is held again")
    callers = [run(c, src, k) for k in ("a", "b")]
    await until(lambda: "kind" in c.queued(), "a batch is pending")
    gate2.opened.set()
    await held
    for t in callers:  # not a hang: "b" is missing from the result
        with pytest.raises(KeyError):
            await t
    await until(lambda: not c.busy(), "nothing runs")


async def test_closing_cancels_the_pending_batches_callers() -> None:
    c, src, gate = Coalescer(1), Source({"a": 1}), Gate()
    held = asyncio.ensure_future(c.run("hold", "h", gate.read, src.many))
    await until(lambda: gate.running == 1, "the only slot is held")
    waiting = run(c, src, "a")
    await until(lambda: "kind" in c.queued(), "a batch is pending")
    await asyncio.gather(*c.close(), return_exceptions=True)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.opened.set()
    assert await held == "held"
    assert src.batches == []


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_batched_resolves_give_what_each_resolve_alone_gives(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, engine: Any
) -> None:
    reads = FastReads(engine, pool_size=1, remember=False)
    try:
        auth = AuthService(sessions)
        alice = await auth.authenticate((await auth.create_token("alice", namespaces=["Acme"])).token)
        data = helpers.shard_bytes(4000, 3)

        async def one() -> Any:
            yield data

        store = FsBlockstore(tmp_path, FsBlockstoreConfig(fsync=False))
        await BlobService(sessions, store).ingest(alice, helpers.cid_of(data), one())
        publish, pointers = PublishService(sessions, None), PointerService(sessions, reads)
        refs = [ModelRef("Acme", "Tiny-LLM"), ModelRef("Acme", "other")]
        cids = {}
        for ref in refs:
            for v in ("1", "2"):
                m = load_manifest(
                    helpers.manifest([("a.safetensors", data)], version=v, model_name=ref.model)
                )
                cids[(ref.model, v)] = (await publish.publish(alice, ref, m)).cid
            await pointers.set(alice, ref, "v1", cids[(ref.model, "1")])
        asks = [
            (ModelRef("acme", "tiny-llm"), "latest"),  # case-blind names
            (ModelRef("ACME", "Tiny-LLM"), "v1"),
            (ModelRef("acme", "other"), "latest"),
            (ModelRef("acme", "other"), "v1"),
            (ModelRef("acme", "tiny-llm"), "latest"),  # the same key twice
            (ModelRef("acme", "tiny-llm"), "nope"),
            (ModelRef("nobody", "tiny-llm"), "latest"),
        ]
        alone: list[Any] = []
        for ref, tag in asks:
            try:
                alone.append(await pointers.resolve(ref, tag))
            except NotFound as e:
                alone.append(e.message)
        gate = Gate()
        held = asyncio.ensure_future(reads.coalesced("hold", gate.read))
        await until(lambda: gate.running == 1, "the only slot is held")
        together = [asyncio.ensure_future(pointers.resolve(ref, tag)) for ref, tag in asks]
        await until(lambda: "resolve" in reads.coalescer.queued(), "the resolves wait as one batch")
        gate.opened.set()
        await held
        got: list[Any] = []
        for t in together:
            try:
                got.append(await t)
            except NotFound as e:
                got.append(e.message)
        assert got == alone
        assert got[0].namespace == "Acme" and got[0].model == "Tiny-LLM"  # names as created
        assert got[0].cid == cids[("Tiny-LLM", "2")] and got[1].cid == cids[("Tiny-LLM", "1")]
        assert got[3].cid == cids[("other", "1")]
    finally:
        await reads.close()


async def _outcome(aw: Any) -> Any:
    try:
        detail = await aw
    except RegistryError as e:
        return (type(e).__name__, e.message)
    return dataclasses.asdict(detail)


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
@pytest.mark.parametrize("kept", [False, True], ids=["content-read", "content-kept"])
async def test_batched_pack_details_give_what_each_alone_gives(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, engine: Any, kept: bool
) -> None:
    reads = FastReads(engine, pool_size=1, remember=False)
    try:
        auth = AuthService(sessions)
        alice = await auth.authenticate((await auth.create_token("alice", namespaces=["acme", "beta"])).token)
        data = helpers.shard_bytes(4000, 4)

        async def one() -> Any:
            yield data

        await BlobService(sessions, FsBlockstore(tmp_path, FsBlockstoreConfig(fsync=False))).ingest(
            alice, helpers.cid_of(data), one()
        )
        publish = PublishService(sessions, None)
        shards = [("a.safetensors", data)]
        cids = [
            (
                await publish.publish(
                    alice, ModelRef("acme", "tiny"), load_manifest(helpers.manifest(shards, v))
                )
            ).cid
            for v in ("1", "2", "3")
        ]
        twice = load_manifest(helpers.manifest(shards, "9"))  # one CID listed by two models
        both = (await publish.publish(alice, ModelRef("acme", "tiny"), twice)).cid
        await publish.publish(alice, ModelRef("beta", "tiny"), twice)
        missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        asks = [cids[0], cids[1], both, cids[2], missing, cids[1]]
        browse = BrowseService(sessions, reads)
        alone = [await _outcome(browse.pack(cid)) for cid in asks]
        assert alone[4][0] == "NotFound" and isinstance(alone[0], dict)
        if not kept:
            browse.contents = content_memo()  # the batch reads the manifests and shards too
        read_alone: list[str] = []
        by_itself = browse._pack

        async def counted(cid: str, model: Any) -> Any:
            read_alone.append(cid)
            return await by_itself(cid, model)

        browse._pack = counted  # type: ignore[method-assign]
        gate = Gate()
        held = asyncio.ensure_future(reads.coalesced("hold", gate.read))
        await until(lambda: gate.running == 1, "the only slot is held")
        together = [asyncio.ensure_future(_outcome(browse.pack(cid))) for cid in asks]
        await until(lambda: "pack" in reads.coalescer.queued(), "the details wait as one batch")
        gate.opened.set()
        await held
        assert await asyncio.gather(*together) == alone
        assert sorted(read_alone) == sorted([both, missing])  # the rest came from the one batched statement
    finally:
        await reads.close()
