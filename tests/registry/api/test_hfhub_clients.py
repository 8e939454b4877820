"""The stock ``huggingface_hub`` client against a live registry (``endpoint=`` is what HF_ENDPOINT sets):
``snapshot_download`` and ``hf_hub_download`` at ``latest``, ``curated`` and a tag, byte-identical; the second
call from the client's cache; a download cut mid-file resumed with a Range; the read gate and ``HF_TOKEN``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.api.hfhub_core import commit_of
from registry.api.keys import BLOCKSTORE
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.hfclient import Seen, curate_by_hand, live, publish_folder, token, write_pack
from tests.registry.api.live import LiveServer

hf = pytest.importorskip("huggingface_hub", reason="the Hub client tests need huggingface_hub (dev extra)")
from huggingface_hub import errors as hf_errors  # noqa: E402

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

BIG = 1024 * 1024 + 123
# The client hands its file 10 MiB chunks (constants.DOWNLOAD_CHUNK_SIZE): a resumable cut lands past one.
HUGE = 24 * 1024 * 1024 + 321
CUT_AT = 16 * 1024 * 1024
CONFIG = b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}\n'
TOKENIZER = helpers.shard_bytes(5000, 31)


def pack_files(seed: int, size: int = BIG) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    return [("model.safetensors", helpers.shard_bytes(size, seed))], [
        ("config.json", CONFIG),
        ("tokenizer.json", TOKENIZER),
    ]


@pytest.fixture(autouse=True)
def _hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_ENABLE_HF_TRANSFER", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)


@pytest.fixture
def hub(settings: Settings) -> Iterator[tuple[LiveServer, Seen]]:
    with live(settings) as started:
        yield started


def publish(
    srv: LiveServer, tmp_path: Path, seed: int, size: int = BIG, **body: str
) -> tuple[str, dict[str, bytes]]:
    shards, files = pack_files(seed, size)
    folder = write_pack(tmp_path / f"pack-{seed}", "tiny", shards, files)
    out = publish_folder(srv, token(srv), "acme/tiny", folder, **body)
    return out["cid"], dict(shards + files)


def snapshot(srv: LiveServer, cache: Path, revision: str, tok: str | bool = False) -> Path:
    return Path(
        hf.snapshot_download("acme/tiny", revision=revision, cache_dir=cache, endpoint=srv.url, token=tok)
    )


def same_files(folder: Path, want: dict[str, bytes]) -> None:
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(want)
    for name, data in want.items():
        assert (folder / name).read_bytes() == data, name


def test_snapshots_at_latest_curated_and_a_tag_are_the_packs_bytes_and_come_from_cache_after(
    hub: tuple[LiveServer, Seen], tmp_path: Path
) -> None:
    srv, seen = hub
    old, old_files = publish(srv, tmp_path, 1, tag="v1")
    curate_by_hand(srv, "acme/tiny", old)
    new, new_files = publish(srv, tmp_path, 2)
    cache = tmp_path / "cache"
    for rev, cid, want in (("latest", new, new_files), ("curated", old, old_files), ("v1", old, old_files)):
        mark = seen.mark()
        folder = snapshot(srv, cache, rev)
        assert folder.name == commit_of(cid), rev
        same_files(folder, want)
        # blobs are cached by ETag (sha256): curated's config and tokenizer are latest's; v1 is curated
        fetched = {g[1].rsplit("/", 1)[1] for g in seen.gets(mark)}
        assert fetched == {"latest": set(want), "curated": {"model.safetensors"}, "v1": set()}[rev], rev
        mark = seen.mark()
        assert snapshot(srv, cache, rev) == folder
        assert seen.gets(mark) == [], seen.since(mark)  # the second call: no file fetched again
    mark = seen.mark()
    one = hf.hf_hub_download(
        "acme/tiny", "config.json", revision="curated", cache_dir=cache, endpoint=srv.url
    )
    assert Path(one).read_bytes() == CONFIG
    # at most the metadata (a HEAD; the server may record it just after the client returns): no bytes fetched
    assert seen.gets(mark) == [] and {r[0] for r in seen.since(mark)} <= {"HEAD"}, seen.since(mark)
    fresh = hf.hf_hub_download(
        "acme/tiny", "model.safetensors", revision="latest", cache_dir=tmp_path / "other", endpoint=srv.url
    )
    assert Path(fresh).read_bytes() == new_files["model.safetensors"]


def test_a_download_cut_mid_file_resumes_with_a_range(
    hub: tuple[LiveServer, Seen], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, seen = hub
    _, files = publish(srv, tmp_path, 3, HUGE)
    store = srv.app[BLOCKSTORE]
    real = store.iter_file_bytes
    cuts: list[int] = []

    def cut_once(root: object, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        sent = 0
        for chunk in real(root, start, end):  # type: ignore[arg-type]
            yield chunk
            sent += len(chunk)
            if not cuts and sent > CUT_AT:
                cuts.append(sent)
                raise OSError("disk read failed (test)")

    monkeypatch.setattr(store, "iter_file_bytes", cut_once)
    mark = seen.mark()
    path = hf.hf_hub_download(
        "acme/tiny", "model.safetensors", revision="latest", cache_dir=tmp_path / "c", endpoint=srv.url
    )
    assert cuts
    assert Path(path).read_bytes() == files["model.safetensors"]
    gets = seen.gets(mark)
    assert [g[2] for g in gets] == [200, 206], gets
    assert gets[1][3] is not None and gets[1][3].startswith("bytes=") and gets[1][3] != "bytes=0-"
    assert not list((tmp_path / "c").rglob("*.incomplete"))


def test_write_calls_from_the_client_are_refused(hub: tuple[LiveServer, Seen], tmp_path: Path) -> None:
    srv, _ = hub
    publish(srv, tmp_path, 4)
    api = hf.HfApi(endpoint=srv.url, token=token(srv))
    with pytest.raises(hf_errors.HfHubHTTPError, match="read-only"):
        api.create_repo("acme/new-one")
    with pytest.raises(hf_errors.HfHubHTTPError, match="read-only"):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="acme/tiny")
    with pytest.raises(hf_errors.RevisionNotFoundError):
        hf.hf_hub_download("acme/tiny", "config.json", revision="nope", cache_dir=tmp_path, endpoint=srv.url)
    with pytest.raises(hf_errors.EntryNotFoundError):
        hf.hf_hub_download("acme/tiny", "nope.bin", cache_dir=tmp_path, endpoint=srv.url)
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        hf.snapshot_download("acme/none", cache_dir=tmp_path, endpoint=srv.url)
    info = api.model_info("acme/tiny", revision="latest", files_metadata=True)
    assert {s.rfilename: s.lfs.sha256 for s in info.siblings or [] if s.lfs} == {
        n: __import__("hashlib").sha256(d).hexdigest() for n, d in zip(*_names_and_bytes(4), strict=True)
    }


def _names_and_bytes(seed: int) -> tuple[list[str], list[bytes]]:
    shards, files = pack_files(seed)
    return [n for n, _ in shards + files], [d for _, d in shards + files]


def test_with_read_requires_token_the_client_needs_hf_token(settings: Settings, tmp_path: Path) -> None:
    with live(settings, read_requires_token=True) as (srv, _):
        publish(srv, tmp_path, 5)
        with pytest.raises((hf_errors.GatedRepoError, hf_errors.RepositoryNotFoundError)):
            hf.hf_hub_download(
                "acme/tiny", "config.json", cache_dir=tmp_path / "a", endpoint=srv.url, token=False
            )
        with pytest.raises((hf_errors.GatedRepoError, hf_errors.RepositoryNotFoundError)):
            snapshot(srv, tmp_path / "b", "latest")
        reader = token(srv, "reader", scopes=("read",))
        env = {
            **os.environ,
            "HF_ENDPOINT": srv.url,
            "HF_TOKEN": reader,
            "HF_HOME": str(tmp_path / "hf-home-cli"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        hf_cli = Path(sys.executable).with_name("hf")
        out = tmp_path / "cli"
        r = subprocess.run(
            [str(hf_cli), "download", "acme/tiny", "--revision", "latest", "--local-dir", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert (out / "config.json").read_bytes() == CONFIG
        env.pop("HF_TOKEN")
        r = subprocess.run(
            [str(hf_cli), "download", "acme/tiny", "config.json", "--cache-dir", str(tmp_path / "cli2")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode != 0 and "access denied" in r.stderr.lower(), r.stderr
