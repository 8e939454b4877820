"""Ed25519 keys for signing manifests: generation, private key files, public keys and key ids.

Private keys are stored as unencrypted PKCS#8 PEM files, mode 0600, written atomically (a temp
file in the same directory, fsync, rename). Public keys load from SubjectPublicKeyInfo PEM or from
the raw 32 bytes in base64. A key id is ``"ed25519:" + sha256(raw public key).hexdigest()``: stable,
derivable by anyone from the public key alone, and the same in manifests, policies and the registry.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from registry.trust.errors import BadPublicKey, KeyFileError

ALGORITHM = "ed25519"
KEY_ID_PREFIX = "ed25519:"
PRIVATE_KEY_MAX_BYTES = 16 * 1024
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")  # DER SubjectPublicKeyInfo header, Ed25519
SIGNATURE_BYTES = 64
_P = 2**255 - 19  # the field prime
_L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point
# The y coordinates of the eight points of order 1, 2, 4 and 8 (the sign bit of x aside):
# 1 (the identity), p-1 (order 2), 0 (order 4) and the two of order 8.
_SMALL_ORDER_Y = frozenset(
    {
        1,
        _P - 1,
        0,
        int.from_bytes(
            bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"
        ),
        int.from_bytes(
            bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"), "little"
        ),
    }
)


def point_problem(raw: bytes) -> str | None:
    """Why a 32-byte Ed25519 public key is unsafe to trust, or None.

    A small-order point (the identity ``01 00..00`` among them) lets one forged signature verify for
    every message (``R = identity, S = 0`` with the identity key), and a non-canonical encoding
    (y >= p) names a point some verifiers read differently.
    """
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= _P:
        return "its encoding is not canonical (y >= p)"
    if y in _SMALL_ORDER_Y:
        return "it is a small-order point (such a key verifies forged signatures)"
    return None


class InsecureKeyFileWarning(UserWarning):
    """A private key file is readable or writable by group or others."""


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key as its 32 raw bytes, with its key id."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise BadPublicKey(f"an Ed25519 public key has 32 bytes, got {len(self.raw)}")

    @property
    def key_id(self) -> str:
        return key_id_of(self.raw)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    def to_pem(self) -> bytes:
        return self._crypto().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature of ``message``.

        Strict: a small-order or non-canonical key verifies nothing, nor does a signature whose S is
        not reduced (S >= L, a malleable copy of another signature).
        """
        if len(signature) != SIGNATURE_BYTES or point_problem(self.raw) is not None:
            return False
        if int.from_bytes(signature[32:], "little") >= _L:
            return False
        try:
            self._crypto().verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def _crypto(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.raw)


def key_id_of(raw_public_key: bytes) -> str:
    """The stable key id of a raw 32-byte Ed25519 public key."""
    return KEY_ID_PREFIX + hashlib.sha256(raw_public_key).hexdigest()


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_of(private_key: Ed25519PrivateKey) -> PublicKey:
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(raw)


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def raw_private_key(private_key: Ed25519PrivateKey) -> bytes:
    """The 32-byte seed, for sealing channel keys at rest."""
    return private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def private_key_from_raw(raw: bytes) -> Ed25519PrivateKey:
    if len(raw) != 32:
        raise KeyFileError(f"an Ed25519 private key seed has 32 bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory; never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_private_key(path: Path, private_key: Ed25519PrivateKey, *, overwrite: bool = False) -> None:
    """Write a PKCS#8 PEM private key file with mode 0600.

    Raises:
        KeyFileError: the file exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key", path=str(path))
    write_atomically(path, private_key_pem(private_key), 0o600)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load a PKCS#8 PEM Ed25519 private key; warns (``InsecureKeyFileWarning``) on loose permissions.

    Raises:
        KeyFileError: missing, unreadable, too large, or not an Ed25519 private key.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise KeyFileError(f"cannot read key file {path}: {e.strerror}", path=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file", path=str(path))
    if st.st_mode & 0o077:
        warnings.warn(
            f"private key file {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
            f"it should be readable only by its owner (chmod 600 {path})",
            InsecureKeyFileWarning,
            stacklevel=2,
        )
    if st.st_size > PRIVATE_KEY_MAX_BYTES:
        raise KeyFileError(f"key file {path} is too large to be a key", path=str(path))
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyFileError(
            f"key file {path} is not an unencrypted PKCS#8 PEM private key ({e})", path=str(path)
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} holds a {type(key).__name__}, not Ed25519", path=str(path))
    return key


def parse_public_key(text: str | bytes) -> PublicKey:
    """A public key from SubjectPublicKeyInfo PEM or from the raw 32 bytes in (url-safe) base64.

    Raises:
        BadPublicKey: neither form, not Ed25519, or a weak point (small order, non-canonical).
    """
    key = _parse_public_key(text)
    problem = point_problem(key.raw)
    if problem is not None:
        raise BadPublicKey(f"refusing Ed25519 public key {key.b64}: {problem}")
    return key


def _parse_public_key(text: str | bytes) -> PublicKey:
    data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    data = data.strip()
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as e:
            raise BadPublicKey(f"not a PEM public key: {e}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise BadPublicKey(f"the PEM public key is a {type(key).__name__}, not Ed25519")
        return PublicKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    try:
        padded = data + b"=" * (-len(data) % 4)
        raw = base64.b64decode(padded.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
    except (binascii.Error, ValueError):
        raise BadPublicKey("a public key must be PEM or the raw 32 bytes in base64") from None
    if len(raw) == len(_SPKI_PREFIX) + 32 and raw.startswith(_SPKI_PREFIX):
        raw = raw[len(_SPKI_PREFIX) :]  # the body of a PEM block pasted without its armour
    return PublicKey(raw)


def load_public_key(path: Path) -> PublicKey:
    path = Path(path)
    try:
        data = path.read_bytes()[:PRIVATE_KEY_MAX_BYTES]
    except OSError as e:
        raise KeyFileError(f"cannot read public key file {path}: {e.strerror}", path=str(path)) from None
    try:
        return parse_public_key(data)
    except BadPublicKey as e:
        raise BadPublicKey(f"public key file {path}: {e.message}") from None
