"""The rules for one shard's fields: a safe file name, a CID the registry can verify, a known UnixFS profile.

Each check returns the value or raises ValueError with a sentence (pydantic turns it into the field's
error; the loader's manifest view into PackInvalid).
"""

from __future__ import annotations

import re

MANIFEST_NAME = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"  # the file an evaluation block's text prompts are tokenized with
FILENAME_MAX_LEN = 255
FILENAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"
_FILENAME = re.compile(FILENAME_PATTERN)
# Names a pack folder uses for itself (compared case-insensitively, as macOS and Windows file systems do).
RESERVED_FILENAMES = frozenset({MANIFEST_NAME, "signatures"})

# The UnixFS profiles a shard CID may name; pinner.unixfs.PROFILES holds their parameters (a test keeps
# the two in step: the format cannot import pinner).
UNIXFS_PROFILES = ("unixfs-v0-2015", "unixfs-v1-2025")

SHA2_256 = 0x12
CID_CODECS = {0x55: "raw", 0x70: "dag-pb"}


def check_shard_filename(name: object, max_len: int = FILENAME_MAX_LEN, what: str = "shard filename") -> str:
    """One plain file name inside the pack folder: ``[A-Za-z0-9._-]``, no separators, not ``.``/``..``,
    no leading dot, at most ``max_len`` characters. ``what`` names the value in messages."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} {name!r} must be a non-empty string")
    if len(name) > max_len:
        raise ValueError(f"{what} {name[:40]!r}... is longer than {max_len} characters")
    if not _FILENAME.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is unsafe and not allowed: use only letters, digits, '.', '_' and '-', "
            "no path separators and no leading '.'"
        )
    if name.lower() in RESERVED_FILENAMES:
        raise ValueError(f"{what} {name!r} is reserved for the pack folder's own files; rename it")
    return name


def check_profile(profile: str | None) -> str | None:
    """None, or one of the UnixFS profile names."""
    if profile is not None and profile not in UNIXFS_PROFILES:
        raise ValueError(f"unknown unixfs profile {profile!r}; known: {', '.join(UNIXFS_PROFILES)}")
    return profile


def check_shard_cid(text: str) -> str:
    """A CID whose bytes can be verified: sha2-256 over the raw or dag-pb codec (what ``ipfs add`` makes)."""
    from multiformats import CID  # here, not at the top: the sandbox imports these rules without it

    try:
        cid = CID.decode(text)
    except Exception as e:  # multiformats raises several unrelated types for bad input
        raise ValueError(f"{text!r} is not a valid CID: {e}") from None
    if cid.hashfun.code != SHA2_256 or len(cid.raw_digest) != 32:
        raise ValueError(f"CID {text} uses hash function {cid.hashfun.name}; only sha2-256 is supported")
    if cid.codec.code not in CID_CODECS:
        raise ValueError(f"CID {text} uses codec {cid.codec.name}; only raw and dag-pb are supported")
    return text
