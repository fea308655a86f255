"""The VGGish log-mel front end against an independent reference, and audio decoding."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from yt8m.core import Yt8mError
from yt8m.extractor import audio
from yt8m.extractor.synthetic import write_test_video

RATE = 16000


# ------------------------------------------------------------------------------------------
# An independent reference written from the definitions in VGGish's mel_features.py /
# vggish_input.py (frame, periodic_hann, stft_magnitude, hertz_to_mel,
# spectrogram_to_mel_matrix, log_mel_spectrogram, then framing the log-mel into examples):
# whole-signal, float64, one band at a time.


def ref_frame(data: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
    num_samples = data.shape[0]
    num_frames = 1 + int(np.floor((num_samples - window_length) / hop_length))
    shape = (num_frames, window_length) + data.shape[1:]
    strides = (data.strides[0] * hop_length,) + data.strides
    return np.lib.stride_tricks.as_strided(data, shape=shape, strides=strides)


def ref_periodic_hann(window_length: int) -> np.ndarray:
    return 0.5 - (0.5 * np.cos(2 * np.pi / window_length * np.arange(window_length)))


def ref_stft_magnitude(signal, fft_length, hop_length, window_length):
    frames = ref_frame(signal, window_length, hop_length)
    window = ref_periodic_hann(window_length)
    return np.abs(np.fft.rfft(frames * window, int(fft_length)))


def ref_hertz_to_mel(frequencies_hertz):
    return 1127.0 * np.log(1.0 + (frequencies_hertz / 700.0))


def ref_mel_matrix(num_mel_bins, num_spectrogram_bins, sample_rate, lower_edge_hertz, upper_edge_hertz):
    nyquist = sample_rate / 2.0
    bins_mel = ref_hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))
    edges = np.linspace(ref_hertz_to_mel(lower_edge_hertz), ref_hertz_to_mel(upper_edge_hertz), num_mel_bins + 2)
    matrix = np.empty((num_spectrogram_bins, num_mel_bins))
    for i in range(num_mel_bins):
        lower, center, upper = edges[i : i + 3]
        lower_slope = (bins_mel - lower) / (center - lower)
        upper_slope = (upper - bins_mel) / (upper - center)
        matrix[:, i] = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    matrix[0, :] = 0.0
    return matrix


def ref_log_mel_spectrogram(data, sample_rate=16000, log_offset=0.01, window_length_secs=0.025, hop_length_secs=0.010):
    window_length = int(round(sample_rate * window_length_secs))
    hop_length = int(round(sample_rate * hop_length_secs))
    fft_length = 2 ** int(np.ceil(np.log(window_length) / np.log(2.0)))
    spectrogram = ref_stft_magnitude(data, fft_length, hop_length, window_length)
    mel = np.dot(spectrogram, ref_mel_matrix(64, spectrogram.shape[1], sample_rate, 125.0, 7500.0))
    return np.log(mel + log_offset)


def ref_examples(data: np.ndarray, hop_frames: int, pad: bool) -> np.ndarray:
    """Frame the whole-signal log-mel into 96-frame examples every `hop_frames` frames."""
    log_mel = ref_log_mel_spectrogram(np.asarray(data, dtype=np.float64))
    if not pad:
        return ref_frame(log_mel, 96, hop_frames)
    count = int(np.ceil(len(log_mel) / hop_frames))
    padded = np.concatenate([log_mel, np.zeros((count * hop_frames + 96, 64))])  # zeros, as MediaPipe
    return np.stack([padded[k * hop_frames : k * hop_frames + 96] for k in range(count)])


# ------------------------------------------------------------------------------------------


def _noise_and_chirp(seconds: float, seed: int = 0) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    rng = np.random.default_rng(seed)
    chirp = 0.4 * np.sin(2 * np.pi * (200 * t + 900 * t**2))
    return (chirp + 0.1 * rng.standard_normal(n)).astype(np.float32)


def test_stock_vggish_hop_matches_reference():
    wave = _noise_and_chirp(3.3)
    ours = audio.log_mel_examples(wave, RATE, hop_seconds=audio.VGGISH_HOP_SECONDS)
    reference = ref_examples(wave, 96, pad=False)
    assert ours.shape == reference.shape == (3, 96, 64)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)


def test_mediapipe_hop_matches_reference_with_zero_padded_last_example():
    wave = _noise_and_chirp(2.5, seed=1)
    ours = audio.log_mel_examples(wave, RATE, hop_seconds=1.0)
    reference = ref_examples(wave, 100, pad=True)
    assert ours.shape == reference.shape == (3, 96, 64)
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    # 2.5 s: the last example has (40000 - 32000 - 400) // 160 + 1 = 48 real frames, then zeros.
    assert np.all(ours[2, 48:] == 0.0) and np.all(ours[2, :48] != 0.0)


def test_sine_tone_lands_in_the_right_mel_band():
    for tone in (300.0, 1000.0, 4000.0):
        t = np.arange(2 * RATE) / RATE
        wave = (0.5 * np.sin(2 * np.pi * tone * t)).astype(np.float32)
        examples = audio.log_mel_examples(wave, RATE)
        band = int(np.argmax(examples[0].mean(axis=0)))
        edges = np.linspace(ref_hertz_to_mel(125.0), ref_hertz_to_mel(7500.0), 66)
        expected = int(np.argmin(np.abs(edges[1:-1] - ref_hertz_to_mel(tone))))
        assert abs(band - expected) <= 1, (tone, band, expected)
        # Far away bands hold (almost) nothing: the tone dominates by a wide margin.
        assert examples[0].mean(axis=0)[band] - np.median(examples[0].mean(axis=0)) > 3.0


@pytest.mark.parametrize(
    "seconds, stock, mediapipe",
    [(0.0, 0, 0), (0.01, 0, 1), (0.5, 0, 1), (0.974, 0, 1), (0.975, 1, 1), (1.0, 1, 1),
     (1.9, 1, 2), (2.5, 2, 3), (3.0, 3, 3)],
)
def test_example_counts(seconds, stock, mediapipe):
    wave = np.zeros(int(round(seconds * RATE)), dtype=np.float32)
    assert len(audio.log_mel_examples(wave, RATE, hop_seconds=0.96)) == stock
    assert len(audio.log_mel_examples(wave, RATE, hop_seconds=1.0)) == mediapipe


def test_silence_and_short_clip_padding():
    examples = audio.log_mel_examples(np.zeros(RATE // 2, np.float32), RATE)
    assert examples.shape == (1, 96, 64)
    assert np.allclose(examples[0, :48], np.log(0.01))  # real (silent) frames
    assert np.all(examples[0, 48:] == 0.0)  # padding
    padded = audio.pad_examples(examples, 3)
    assert padded.shape == (3, 96, 64) and np.allclose(padded[1:], np.log(0.01))
    assert audio.pad_examples(padded, 2).shape == (2, 96, 64)


def test_streaming_equals_whole_signal():
    wave = _noise_and_chirp(4.2, seed=3)
    whole = audio.log_mel_examples(wave, RATE)
    framer = audio.LogMelFramer(1.0)
    pieces = [framer.push(wave[i : i + 1234]) for i in range(0, len(wave), 1234)] + [framer.finish()]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_resampling_and_channel_averaging():
    rate = 44100
    t = np.arange(int(1.5 * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    stereo = np.stack([tone, np.zeros_like(tone)], axis=1)  # [samples, channels]
    resampled = audio.log_mel_examples(stereo, rate)
    t16 = np.arange(int(1.5 * RATE)) / RATE
    direct = audio.log_mel_examples((0.25 * np.sin(2 * np.pi * 1000.0 * t16)).astype(np.float32), RATE)
    assert resampled.shape == direct.shape == (2, 96, 64)
    # Same tone at half amplitude (channels averaged): the mel magnitudes agree away from the
    # edges (up to the resampling filter's small leakage, far below the tone).
    np.testing.assert_allclose(np.exp(resampled[0, 5:90]), np.exp(direct[0, 5:90]), rtol=0.02, atol=0.01)
    assert np.exp(direct[0, 5:90]).max() > 10.0


def _write_left_only_tone(path, seconds=2.0, rate=48000, tone=1000.0):
    """Stereo AAC with the tone on the left channel only and silence on the right."""
    import av

    t = np.arange(int(seconds * rate)) / rate
    left = (0.5 * np.sin(2 * np.pi * tone * t)).astype(np.float32)
    data = np.stack([left, np.zeros_like(left)])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "stereo"
        for start in range(0, data.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, start : start + 1024]), format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_file_decoding_averages_channels_at_16k(tmp_path):
    path = _write_left_only_tone(tmp_path / "left.m4a")
    wave = audio.read_waveform(path)
    assert wave.dtype == np.float32
    assert abs(len(wave) - 2 * RATE) < 0.05 * RATE
    # mean of (0.5 sin, 0) is 0.25 sin; FFmpeg's own stereo->mono down-mix would give ~0.354.
    middle = wave[RATE // 4 : -RATE // 4]
    assert np.abs(middle).max() == pytest.approx(0.25, abs=0.02)
    spectrum = np.abs(np.fft.rfft(middle))
    assert np.fft.rfftfreq(len(middle), 1 / RATE)[np.argmax(spectrum)] == pytest.approx(1000.0, abs=5)


def test_audio_examples_from_video_files(tmp_path):
    sine = write_test_video(tmp_path / "sine.mp4", 3.0, audio="sine", tone_hz=440.0)
    silent = write_test_video(tmp_path / "silent.mp4", 2.0, audio="silent")
    mute = write_test_video(tmp_path / "mute.mp4", 2.0, audio=None)
    assert audio.has_audio(sine) and audio.has_audio(silent) and not audio.has_audio(mute)
    examples = np.stack(list(audio.iter_audio_examples(sine)))
    assert examples.shape == (3, 96, 64)
    assert int(np.argmax(examples[1].mean(axis=0))) == int(np.argmax(audio.log_mel_examples(
        (0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32), RATE)[0].mean(axis=0)))
    quiet = np.stack(list(audio.iter_audio_examples(silent)))
    assert len(quiet) == 2 and np.abs(quiet[0, :90] - np.log(0.01)).max() < 0.01
    with pytest.raises(Yt8mError, match="no audio stream"):
        list(audio.iter_audio_examples(mute))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01" * 1000)
    with pytest.raises(Yt8mError, match="garbage.mp4"):
        audio.has_audio(garbage)


def test_mel_matrix_properties():
    matrix = audio.mel_matrix()
    assert matrix.shape == (257, 64)
    assert np.all(matrix[0] == 0.0)  # DC weight 0
    np.testing.assert_allclose(matrix, ref_mel_matrix(64, 257, 16000, 125.0, 7500.0), atol=1e-6)


def test_late_audio_stream_is_aligned_to_the_first_frame(tmp_path):
    """Audio whose stream starts 1 s after the video: the first second is silence."""
    path = write_test_video(tmp_path / "late.mp4", 3.0, audio="sine", tone_hz=1000.0, audio_offset=1.0)
    aligned = np.stack(list(audio.iter_audio_examples(path)))
    assert len(aligned) == 4  # 1 s of silence + 3 s of tone
    assert np.abs(aligned[0, :90] - np.log(0.01)).max() < 0.01
    assert aligned[1, 10:].mean(axis=0).max() > 0.0
    raw = audio.LogMelFramer()
    unaligned = np.concatenate([raw.push(chunk) for chunk in audio.iter_waveform(path, align_to_video=False)])
    assert unaligned[0, 10:].mean(axis=0).max() > 0.0  # without alignment the tone starts at once
