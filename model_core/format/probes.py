"""The fingerprint's probes (scheme ``probe-v1``): the fixed token ids every validation feeds a model and the
positions whose predictions it records. Torch- and pydantic-free: the sandbox's worker imports this, not
``model_core.format.fingerprint`` (the stored fingerprint's schema and comparison), on its critical path."""

from __future__ import annotations

FINGERPRINT_SCHEME = "probe-v1"
FINGERPRINT_K = 5
PROBE_COUNT = 8
PROBE_LEN = 16
PROBE_POSITIONS = 4
LOGPROB_DECIMALS = 4
PROB_FLOOR = 1e-9
MAX_ROWS = PROBE_COUNT * PROBE_POSITIONS

_LCG_A = 6364136223846793005
_LCG_C = 1442695040888963407
_MASK64 = 2**64 - 1


def probe_inputs(vocab_size: int, max_seq_len: int) -> list[list[int]]:
    """PROBE_COUNT deterministic sequences of token ids in [0, vocab_size), each min(PROBE_LEN,
    max_seq_len) long: a 64-bit LCG seeded by the probe's index, its high bits taken modulo the vocab."""
    length = max(1, min(PROBE_LEN, max_seq_len))
    probes = []
    for p in range(PROBE_COUNT):
        state = (p + 1) * 0x9E3779B97F4A7C15 & _MASK64
        row = []
        for _ in range(length):
            state = (state * _LCG_A + _LCG_C) & _MASK64
            row.append((state >> 33) % vocab_size)
        probes.append(row)
    return probes


def probe_positions(length: int) -> list[int]:
    """The positions of a probe whose predictions are recorded: evenly spaced, the last one included."""
    return sorted({max(0, length * (j + 1) // PROBE_POSITIONS - 1) for j in range(PROBE_POSITIONS)})
