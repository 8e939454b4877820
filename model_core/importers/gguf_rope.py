"""Llama 3 rope scaling recovered from a GGUF's ``rope_freqs.weight``.

llama.cpp's converter does not store Llama 3's ``rope_scaling`` parameters; it stores the per-frequency
divisors they produce (1 for short wavelengths, ``factor`` for long ones, a smooth blend between). Those
divisors depend on the parameters only through ``factor`` and a line ``s = A / wavelength + B``, so with
``low_freq_factor`` fixed at 1 the rest follows; the result is accepted only if it reproduces every
divisor in the file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

RTOL = 1e-4


def llama3_divisors(params: dict[str, Any], theta: float, head_dim: int) -> np.ndarray:
    """The divisor of each rotary frequency under Llama 3 scaling (what llama.cpp's converter stores)."""
    inv = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * math.pi / inv
    factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
    orig = params["original_max_position_embeddings"]
    smooth = (orig / wavelen - low) / (high - low)
    blended = 1 / ((1 - smooth) / factor + smooth)
    return np.where(wavelen < orig / high, 1.0, np.where(wavelen > orig / low, factor, blended))


def _fits(params: dict[str, Any], divisors: np.ndarray, theta: float, head_dim: int) -> bool:
    return bool(np.allclose(llama3_divisors(params, theta, head_dim), divisors, rtol=RTOL, atol=0))


def llama3_scaling(divisors: np.ndarray, theta: float, head_dim: int) -> dict[str, Any] | None:
    """HF ``rope_scaling`` (``rope_type: llama3``) reproducing ``divisors``; None when all are 1.

    Raises ValueError (with the reason) when no Llama 3 parameters reproduce them.
    """
    f = np.asarray(divisors, dtype=np.float64).reshape(-1)
    if f.shape != (head_dim // 2,):
        raise ValueError(f"has {f.size} values, expected {head_dim // 2} (half the head size)")
    if not np.isfinite(f).all() or (f < 1 - RTOL).any():
        raise ValueError("holds values that are not finite or below 1")
    if np.allclose(f, 1.0, rtol=RTOL, atol=0):
        return None
    factor = float(f.max())
    inv = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    x = inv / (2 * math.pi)  # 1 / wavelength
    medium = (f > 1 + RTOL) & (f < factor * (1 - RTOL))
    candidates: list[dict[str, Any]] = []
    if medium.sum() >= 2:
        s = (1 / f[medium] - 1 / factor) / (1 - 1 / factor)
        slope, intercept = np.polyfit(x[medium], s, 1)
        if intercept < 0 < slope:
            orig = round(
                -slope / intercept
            )  # low_freq_factor = 1: B = -1 / (high - 1), A = orig / (high - 1)
            high = round(1 + orig / slope, 4)
            candidates.append(
                {
                    "low_freq_factor": 1.0,
                    "high_freq_factor": float(high),
                    "original_max_position_embeddings": int(orig),
                }
            )
    candidates.append(
        {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    )
    for c in candidates:
        params = {"rope_type": "llama3", "factor": factor, **c}
        if _fits(params, f, theta, head_dim):
            return params
    raise ValueError("matches no Llama 3 rope scaling (factor, low/high frequency factors, original context)")
