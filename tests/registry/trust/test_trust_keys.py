"""Key files, key ids and public key parsing; key sealing at rest."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.errors import RegistryError
from registry.trust.errors import BadPublicKey, KeyFileError, KeySealError, TrustError
from registry.trust.keys import (
    InsecureKeyFileWarning,
    PublicKey,
    key_id_of,
    load_private_key,
    load_public_key,
    parse_public_key,
    private_key_from_raw,
    public_key_of,
    raw_private_key,
    write_private_key,
)
from registry.trust.sealing import generate_kek, open_private_key, parse_kek, seal_private_key


def test_errors_root_is_a_registry_error() -> None:
    assert issubclass(TrustError, RegistryError)
    assert issubclass(KeyFileError, TrustError)


def test_key_id_is_sha256_of_raw_public_key() -> None:
    raw = bytes(range(32))
    assert key_id_of(raw) == "ed25519:" + hashlib.sha256(raw).hexdigest()
    assert PublicKey(raw).key_id == key_id_of(raw)


def test_private_key_file_is_0600_and_round_trips(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "signing.pem"
    write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(path)
    assert public_key_of(loaded) == public_key_of(key)
    assert [p.name for p in tmp_path.iterdir()] == ["signing.pem"]  # no temp file left behind


def test_existing_key_file_is_not_overwritten(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "k"
    path.write_text("precious")
    with pytest.raises(KeyFileError, match="already exists"):
        write_private_key(path, key)
    assert path.read_text() == "precious"


def test_loose_permissions_warn(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "k"
    write_private_key(path, key)
    os.chmod(path, 0o644)
    with pytest.warns(InsecureKeyFileWarning, match="0644"):
        loaded = load_private_key(path)
    assert public_key_of(loaded) == public_key_of(key)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"not a key", "not an unencrypted PKCS#8"), (b"", "not an unencrypted PKCS#8")],
)
def test_bad_private_key_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "k"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match=match):
        load_private_key(path)


def test_missing_private_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_private_key(tmp_path / "nope")


def test_non_ed25519_private_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.pem"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="not Ed25519"):
        load_private_key(path)


def test_public_key_from_pem_and_base64(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    pub = public_key_of(key)
    assert parse_public_key(pub.to_pem()) == pub
    assert parse_public_key(pub.b64) == pub
    assert parse_public_key(base64.urlsafe_b64encode(pub.raw).decode().rstrip("=")) == pub
    pem_body = "".join(line for line in pub.to_pem().decode().splitlines() if not line.startswith("-----"))
    assert parse_public_key(pem_body) == pub
    (tmp_path / "k.pub").write_bytes(pub.to_pem())
    assert load_public_key(tmp_path / "k.pub") == pub


@pytest.mark.parametrize(
    "text", ["", "%%%", base64.b64encode(b"short").decode(), "-----BEGIN PUBLIC KEY-----\nxx"]
)
def test_bad_public_keys(text: str) -> None:
    with pytest.raises(BadPublicKey):
        parse_public_key(text)


def test_seal_round_trip_and_binding(key: Ed25519PrivateKey) -> None:
    kek = generate_kek()
    raw = raw_private_key(key)
    sealed = seal_private_key(raw, kek, aad=b"acme/tiny@curated")
    assert raw not in sealed
    opened = open_private_key(sealed, kek, aad=b"acme/tiny@curated")
    assert public_key_of(private_key_from_raw(opened)) == public_key_of(key)
    with pytest.raises(KeySealError):
        open_private_key(sealed, kek, aad=b"acme/tiny@latest")
    with pytest.raises(KeySealError):
        open_private_key(sealed, generate_kek(), aad=b"acme/tiny@curated")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(KeySealError):
        open_private_key(tampered, kek, aad=b"acme/tiny@curated")


def test_kek_must_be_32_bytes() -> None:
    assert parse_kek(base64.b64encode(b"k" * 32).decode()) == b"k" * 32
    with pytest.raises(KeySealError, match="32 bytes"):
        parse_kek(base64.b64encode(b"k" * 16).decode())
    with pytest.raises(KeySealError, match="base64"):
        parse_kek("not base64!")
    with pytest.raises(KeySealError, match="mpk1"):
        open_private_key(b"garbage", b"k" * 32)
