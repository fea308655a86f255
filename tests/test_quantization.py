"""The dataset's 8-bit quantization (REFERENCE.md §2): clip, scale, truncate; dequantize adds half a step.

Expected values are written out from the reference formulas, not taken from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from yt8m.pca import QUANT_MAX, QUANT_MIN, dequantize, quantize
from yt8m.pca.quantization import NEUTRAL_BYTE

STEP = 4 / 255  # one quantization step of the default [-2, 2] range


def test_known_values() -> None:
    q = quantize(np.array([0.0, -2.0, 2.0, -5.0, 7.5, -2.0001, 2.0001]))
    assert q.dtype == np.uint8
    np.testing.assert_array_equal(q, [127, 0, 255, 0, 255, 0, 255])
    assert (QUANT_MIN, QUANT_MAX) == (-2.0, 2.0)


def test_truncates_instead_of_rounding() -> None:
    # (x + 2) * 255 / 4 = b + 0.9 must give b (round() would give b + 1)
    bytes_ = np.array([0, 1, 50, 100, 200, 254])
    x = (bytes_ + 0.9) * 4 / 255 - 2
    np.testing.assert_array_equal(quantize(x), bytes_)
    x_low = (bytes_ + 0.1) * 4 / 255 - 2
    np.testing.assert_array_equal(quantize(x_low), bytes_)
    assert quantize(np.array([1.0]))[0] == 191  # 3 * 63.75 = 191.25


def test_dequantize_known_values() -> None:
    out = dequantize(np.array([0, 127, 255], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], 4 / 512 - 2, atol=1e-6)  # -1.9921875
    np.testing.assert_allclose(out[2], 4 + 4 / 512 - 2, atol=1e-6)  # 2.0078125
    np.testing.assert_allclose(out[1], 127 * 4 / 255 + 4 / 512 - 2, atol=1e-6)  # -3.06e-5
    assert abs(out[1]) < 1e-4  # byte 127 is the "~0.0" byte


def test_neutral_byte_is_zero() -> None:
    assert NEUTRAL_BYTE == 127
    assert quantize(np.zeros(3))[0] == NEUTRAL_BYTE
    assert abs(float(dequantize(np.array([NEUTRAL_BYTE]))[0])) < 1e-4
    assert float(dequantize(np.array([0]))[0]) < -1.99  # why 0x00 must never mean "no audio"


def test_round_trip_within_one_step() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=100_000).astype(np.float32)
    restored = dequantize(quantize(x))
    error = np.abs(restored - x)
    assert error.max() <= STEP
    # truncation loses up to one step, the 4/512 bias gives half of it back: |error| < STEP - 4/512
    assert error.max() <= STEP - 4 / 512 + 1e-6
    # every byte below 255 is reached from [-2, 2) (255 only from exactly 2.0, tested above)
    np.testing.assert_array_equal(np.unique(quantize(x)), np.arange(255))


def test_shapes_are_kept_and_lists_accepted() -> None:
    q = quantize([[0.0, 1.0], [-1.0, 2.0]])
    assert q.shape == (2, 2)
    np.testing.assert_array_equal(q, [[127, 191], [63, 255]])
    assert dequantize(q).shape == (2, 2)


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-1.0, 3.0), (-10.0, 10.0)])
def test_custom_range(low: float, high: float) -> None:
    span = high - low
    step = span / 255
    x = np.array([low, high, low - 1, high + 1, low + 0.5 * span])
    expected = [0, 255, 0, 255, 127]  # midpoint: 127.5 truncated
    np.testing.assert_array_equal(quantize(x, low, high), expected)
    np.testing.assert_allclose(
        dequantize(np.array([0, 255]), low, high), [low + span / 512, high + span / 512], rtol=1e-6, atol=1e-6
    )
    rng = np.random.default_rng(1)
    values = rng.uniform(low, high, size=10_000)
    restored = dequantize(quantize(values, low, high), low, high)
    assert np.abs(restored - values).max() <= step
