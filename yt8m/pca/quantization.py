"""The dataset's 8-bit quantization (REFERENCE.md §2).

quantize: clip to [min, max], scale to [0, 255], truncate. dequantize adds half a step back
(`4/512` for the default range), so byte 127 maps to ~0.0 and a truncated value round-trips
within one step.
"""

from __future__ import annotations

import numpy as np

QUANT_MIN = -2.0
QUANT_MAX = 2.0
QUANT_LEVELS = 255.0
# The byte that dequantizes to ~0.0: written for missing audio, never 0x00 (which is -1.99).
NEUTRAL_BYTE = 127


def quantize(x: np.ndarray, min_value: float = QUANT_MIN, max_value: float = QUANT_MAX) -> np.ndarray:
    """Clip floats to [min_value, max_value] and map them to uint8 by truncation."""
    span = max_value - min_value
    clipped = np.clip(np.asarray(x, dtype=np.float32), min_value, max_value)
    scaled = (clipped - min_value) * (QUANT_LEVELS / span)
    return scaled.astype(np.uint8)


def dequantize(q: np.ndarray, min_value: float = QUANT_MIN, max_value: float = QUANT_MAX) -> np.ndarray:
    """Map uint8 back to floats: `q * span/255 + span/512 + min_value`, as the starter code does."""
    span = max_value - min_value
    scalar = span / QUANT_LEVELS
    bias = (span / 512.0) + min_value
    return np.asarray(q, dtype=np.float32) * np.float32(scalar) + np.float32(bias)
