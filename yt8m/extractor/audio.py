"""Audio decoding (PyAV) and the VGGish log-mel front end in numpy (REFERENCE.md §4).

Decoding: the first audio stream, resampled to 16 kHz float32 by FFmpeg's resampler
(`av.AudioResampler`, streaming, keeping the source channel layout), then the channels are
averaged to mono (VGGish and MediaPipe average; FFmpeg's own down-mix would weight by 1/sqrt(2)).
Packets are decoded one by one: a damaged one becomes silence of its duration (measured by the
next good frame's timestamp, in whole codec frames), the rest stays aligned, and one warning
names the file and the seconds; only a stream of which nothing decodes is an error.
In-memory waveforms at another rate are resampled with `scipy.signal.resample_poly` (polyphase,
Kaiser window; VGGish itself uses resampy's band-limited sinc, so results differ from it by a
small filter difference, not in timing).

Front end (as VGGish's `mel_features.py`): frames of 400 samples (25 ms) every 160 (10 ms), a
periodic Hann window, a 512-point FFT, magnitude spectrum, 64 triangular mel bands from 125 to
7500 Hz on the HTK scale `1127 ln(1 + f/700)` with the DC bin weighted 0, then
`log(mel + 0.01)`. Examples are 96 frames x 64 bands (0.96 s); example k starts at sample
round(k * hop * 16000):

- hop 0.96 s (`VGGISH_HOP_SECONDS`): stock VGGish; only complete examples, the last partial one
  is dropped (clips under 0.975 s give none).
- hop 1.0 s (`MEDIAPIPE_HOP_SECONDS`, the default): YT8M / MediaPipe, one example per second
  aligned with the 1 fps frames. The last example is kept while it holds at least one complete
  STFT frame and its missing frames are zeros in the log-mel matrix, as MediaPipe's
  TimeSeriesFramerCalculator pads (`pad_final_packet`). A clip shorter than one STFT frame is
  zero-padded to one. Whole examples past the end of the audio, which `pad_examples` adds when
  the video is longer than its audio track, are silence (`log(0.01)` everywhere) instead.

Audio and frames share one clock: sample 0 is the video's t = 0 (an audio stream starting later
is preceded by silence, one starting earlier is trimmed).

Everything streams: `LogMelFramer` turns 16 kHz chunks into examples as soon as they are
complete, so memory does not grow with the length of the file.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy.sparse import csr_matrix

from yt8m.core import Yt8mError
from yt8m.extractor import video as video_lib

SAMPLE_RATE = 16000
STFT_WINDOW_SECONDS = 0.025
STFT_HOP_SECONDS = 0.010
WINDOW_SAMPLES = int(round(SAMPLE_RATE * STFT_WINDOW_SECONDS))  # 400
HOP_SAMPLES = int(round(SAMPLE_RATE * STFT_HOP_SECONDS))  # 160
FFT_LENGTH = 2 ** int(math.ceil(math.log2(WINDOW_SAMPLES)))  # 512
SPECTROGRAM_BINS = FFT_LENGTH // 2 + 1  # 257
NUM_MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
MEL_BREAK_FREQUENCY_HZ = 700.0
MEL_HIGH_FREQUENCY_Q = 1127.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s of 10 ms frames
EXAMPLE_SPAN_SAMPLES = (EXAMPLE_FRAMES - 1) * HOP_SAMPLES + WINDOW_SAMPLES  # 15600 (0.975 s)
VGGISH_HOP_SECONDS = 0.96
MEDIAPIPE_HOP_SECONDS = 1.0
EXAMPLES_PER_BLOCK = 32  # examples computed together (bounds the temporary [K, 96, 400] array)
SILENCE_LOG_MEL = float(np.log(LOG_OFFSET))  # log-mel value of digital silence
# What to do when a file's audio cannot be decoded at all: its pictures can still be extracted.
NO_AUDIO_HINT = "extract it without audio (audio=False, --no-audio) to keep the video's rgb features"
# Audio starting within this of the video's first frame counts as aligned (AAC priming etc.).
ALIGN_TOLERANCE_SECONDS = 0.005


def hertz_to_mel(frequencies: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 1127 ln(1 + f / 700)."""
    return MEL_HIGH_FREQUENCY_Q * np.log1p(np.asarray(frequencies, dtype=np.float64) / MEL_BREAK_FREQUENCY_HZ)


def periodic_hann(length: int) -> np.ndarray:
    """Periodic Hann window (the DFT-even one VGGish uses): 0.5 - 0.5 cos(2 pi n / length)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi / length * np.arange(length))


@functools.cache
def mel_matrix() -> np.ndarray:
    """The [257, 64] float32 matrix mapping FFT magnitudes to VGGish's mel bands."""
    bin_mels = hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2.0, SPECTROGRAM_BINS))
    edges = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ), NUM_MEL_BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels[:, None] - lower) / (center - lower)
    falling = (upper - bin_mels[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin carries no weight
    matrix = weights.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


@functools.cache
def _mel_projection():
    """`mel_matrix()` transposed as a scipy CSR matrix (~460 non-zeros of 16448).

    Sparse and single-threaded on purpose: a dense matmul this small goes through OpenBLAS'
    thread pool, whose wake-up costs milliseconds per call on a busy CPU (25x the work itself).
    """
    return csr_matrix(mel_matrix().T)


@functools.cache
def _window() -> np.ndarray:
    window = periodic_hann(WINDOW_SAMPLES).astype(np.float32)
    window.setflags(write=False)
    return window


_FRAME_STARTS = np.arange(EXAMPLE_FRAMES) * HOP_SAMPLES  # first sample of each frame of an example


def _examples_at(samples: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Log-mel examples [K, 96, 64] whose first samples are `starts` (each + 15600 <= len)."""
    out = np.empty((len(starts), EXAMPLE_FRAMES, NUM_MEL_BANDS), dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(samples, WINDOW_SAMPLES)  # a view, no copy
    for begin in range(0, len(starts), EXAMPLES_PER_BLOCK):
        block = starts[begin : begin + EXAMPLES_PER_BLOCK]
        frames = windows[(block[:, None] + _FRAME_STARTS).reshape(-1)] * _window()  # [k * 96, 400]
        spectrum = np.abs(np.fft.rfft(frames, n=FFT_LENGTH, axis=-1)).astype(np.float32, copy=False)
        mel = (_mel_projection() @ spectrum.T).T  # [k * 96, 64]
        out[begin : begin + len(block)] = np.log(mel + LOG_OFFSET).reshape(len(block), EXAMPLE_FRAMES, NUM_MEL_BANDS)
    return out


def silence_example() -> np.ndarray:
    """The log-mel example of digital silence: [96, 64] filled with log(0.01)."""
    return np.full((EXAMPLE_FRAMES, NUM_MEL_BANDS), SILENCE_LOG_MEL, dtype=np.float32)


def _default_pad(hop_seconds: float) -> bool:
    return not math.isclose(hop_seconds, VGGISH_HOP_SECONDS)


class LogMelFramer:
    """Streaming log-mel examples from 16 kHz mono chunks: `push` chunks, then `finish`.

    Both return float32 [N, 96, 64] (N may be 0). `pad_final=None` pads the last example for any
    hop except VGGish's 0.96 s (see the module docstring).
    """

    def __init__(self, hop_seconds: float = MEDIAPIPE_HOP_SECONDS, pad_final: bool | None = None) -> None:
        if not (hop_seconds > 0 and math.isfinite(hop_seconds)):
            raise Yt8mError(f"audio example hop must be > 0 seconds, got {hop_seconds}")
        self.hop = Fraction(hop_seconds).limit_denominator(1_000_000) * SAMPLE_RATE
        self.pad_final = _default_pad(hop_seconds) if pad_final is None else bool(pad_final)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # absolute index of _buffer[0]
        self._next = 0  # index of the next example
        self.samples_seen = 0
        self.examples_emitted = 0
        self._finished = False

    def _start(self, k: int) -> int:
        return int(round(k * self.hop))

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add mono 16 kHz samples; returns the examples completed by them."""
        if self._finished:
            raise RuntimeError("LogMelFramer.push after finish")
        chunk = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.samples_seen += chunk.size
        self._buffer = np.concatenate([self._buffer, chunk]) if self._buffer.size else chunk
        end = self._offset + self._buffer.size
        starts = []
        while self._start(self._next) + EXAMPLE_SPAN_SAMPLES <= end:
            starts.append(self._start(self._next) - self._offset)
            self._next += 1
        examples = _examples_at(self._buffer, np.asarray(starts, dtype=np.int64)) if starts else _empty()
        keep_from = min(self._start(self._next) - self._offset, self._buffer.size)
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:].copy()
            self._offset += keep_from
        self.examples_emitted += len(examples)
        return examples

    def finish(self) -> np.ndarray:
        """The remaining (padded) examples at the end of the stream."""
        if self._finished:
            return _empty()
        self._finished = True
        if not self.pad_final:
            return _empty()
        total = self._offset + self._buffer.size
        if 0 < total < WINDOW_SAMPLES:  # shorter than one STFT frame: pad it to one
            self._buffer = np.concatenate([self._buffer, np.zeros(WINDOW_SAMPLES - total, np.float32)])
            total = WINDOW_SAMPLES
        starts = []
        while self._start(self._next) + WINDOW_SAMPLES <= total:
            starts.append(self._start(self._next) - self._offset)
            self._next += 1
        if not starts:
            return _empty()
        padded = np.concatenate([self._buffer, np.zeros(EXAMPLE_SPAN_SAMPLES, np.float32)])
        examples = _examples_at(padded, np.asarray(starts, dtype=np.int64))
        for row, start in enumerate(starts):
            complete_frames = (self._buffer.size - start - WINDOW_SAMPLES) // HOP_SAMPLES + 1
            examples[row, max(complete_frames, 0) :] = 0.0  # MediaPipe's framer pads with zeros
        self._buffer = np.zeros(0, dtype=np.float32)
        self.examples_emitted += len(examples)
        return examples


def _empty() -> np.ndarray:
    return np.zeros((0, EXAMPLE_FRAMES, NUM_MEL_BANDS), dtype=np.float32)


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """[n] or [n, channels] (VGGish's layout) -> float32 [n], averaging the channels."""
    array = np.asarray(waveform)
    if array.ndim == 2:
        array = array.mean(axis=1)
    elif array.ndim != 1:
        raise Yt8mError(f"waveform must be [samples] or [samples, channels], got shape {list(array.shape)}")
    return array.astype(np.float32, copy=False)


def resample(waveform: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono audio with scipy's polyphase filter (no-op at the target rate)."""
    if sample_rate == target_rate:
        return np.asarray(waveform, dtype=np.float32)
    if sample_rate <= 0:
        raise Yt8mError(f"sample rate must be > 0, got {sample_rate}")
    # Imported here: scipy.signal costs ~0.8 s of start-up and files never need it (FFmpeg resamples).
    from scipy.signal import resample_poly

    ratio = Fraction(int(target_rate), int(sample_rate))
    return resample_poly(np.asarray(waveform, dtype=np.float64), ratio.numerator, ratio.denominator).astype(np.float32)


def log_mel_examples(
    waveform: np.ndarray,
    sample_rate: int,
    hop_seconds: float = MEDIAPIPE_HOP_SECONDS,
    pad_final: bool | None = None,
) -> np.ndarray:
    """VGGish log-mel examples float32 [N, 96, 64] of a waveform in [-1, 1].

    `waveform` is [samples] or [samples, channels] (averaged to mono) at `sample_rate`
    (resampled to 16 kHz). hop 0.96 = stock VGGish (partial last example dropped), hop 1.0 =
    MediaPipe / YT8M (one example per second, last one padded). `pad_final` overrides the
    padding choice.
    """
    mono = resample(to_mono(waveform), int(sample_rate))
    framer = LogMelFramer(hop_seconds, pad_final)
    return np.concatenate([framer.push(mono), framer.finish()])


def pad_examples(examples: np.ndarray, count: int) -> np.ndarray:
    """Truncate or extend [N, 96, 64] examples to `count`, extending with silence examples."""
    if len(examples) >= count:
        return examples[:count]
    filler = np.broadcast_to(silence_example(), (count - len(examples), EXAMPLE_FRAMES, NUM_MEL_BANDS))
    return np.concatenate([examples, filler]).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- decoding


def _open_container(path: Path):
    if not path.exists():
        raise Yt8mError(f"{path}: no such file")
    try:
        return av.open(str(path))
    except av.FFmpegError as error:
        raise Yt8mError(f"{path}: cannot read audio ({_reason(error)})") from None
    except OSError as error:
        raise Yt8mError(f"{path}: cannot be read ({error.strerror or error})") from None


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return str(text).split(":")[0].strip() or type(error).__name__


def has_audio(path: str | os.PathLike) -> bool:
    """Whether the file has an audio stream (Yt8mError if the container cannot be read)."""
    container = _open_container(Path(path))
    try:
        return len(container.streams.audio) > 0
    finally:
        container.close()


def _video_start(container) -> float:
    """Start time (s) of the first video stream, the t = 0 of the frames; 0 without one."""
    if container.streams.video:
        stream = container.streams.video[0]
        if stream.start_time is not None and stream.time_base is not None:
            return float(stream.start_time * stream.time_base)
    return 0.0


class _Aligner:
    """Shift audio so that sample 0 is at the video's t = 0: pad a late start, cut an early one."""

    def __init__(self, offset_seconds: float) -> None:
        shift = int(round(offset_seconds * SAMPLE_RATE))
        self.pad = max(shift, 0) if abs(offset_seconds) >= ALIGN_TOLERANCE_SECONDS else 0
        self.cut = max(-shift, 0) if abs(offset_seconds) >= ALIGN_TOLERANCE_SECONDS else 0

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if self.pad:
            samples = np.concatenate([np.zeros(self.pad, np.float32), samples])
            self.pad = 0
        if self.cut:
            dropped = min(self.cut, samples.size)
            samples = samples[dropped:]
            self.cut -= dropped
        return samples


def _silence_like(frame, samples: int):
    """An audio frame of `samples` zeros in `frame`'s format, layout and rate (fills a damaged span)."""
    silent = av.AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=samples)
    for plane in silent.planes:
        plane.update(bytes(plane.buffer_size))
    silent.sample_rate = frame.sample_rate
    return silent


class _MonoResampler:
    """FFmpeg's resampler to 16 kHz, rebuilt when the source format changes mid-stream."""

    def __init__(self) -> None:
        self._resampler = None
        self._key: tuple | None = None

    def _drain(self) -> Iterator[np.ndarray]:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                yield out.to_ndarray().mean(axis=0, dtype=np.float32)

    def push(self, frame) -> Iterator[np.ndarray]:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key:
            yield from self._drain()
            self._resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=SAMPLE_RATE)
            self._key = key
        for out in self._resampler.resample(frame):
            yield out.to_ndarray().mean(axis=0, dtype=np.float32)

    def finish(self) -> Iterator[np.ndarray]:
        yield from self._drain()
        self._resampler = None


def _missing_samples(seconds: float, rate: int, unit: int) -> int:
    """Samples lost (> 0) or decoded twice (< 0) between two frames after damage: a whole number
    of frames where frames have one size (AAC 1024, MP2 1152, AC-3 1536), since container
    timestamps are often rounded (Matroska: to the millisecond)."""
    samples = seconds * rate
    if unit > 0 and abs(samples) >= unit / 2:
        return int(round(samples / unit)) * unit
    return int(round(samples)) if abs(samples) >= unit / 2 else 0


def _packet_span(packet, stream) -> tuple[float, float] | None:
    time_base = packet.time_base or stream.time_base
    if packet.pts is None or time_base is None:
        return None
    start = float(packet.pts * time_base)
    return start, start + float((packet.duration or 0) * time_base)


def iter_waveform(
    path: str | os.PathLike, align_to_video: bool = True, on_warning: Callable[[str], None] | None = None
) -> Iterator[np.ndarray]:
    """Stream the first audio stream as mono float32 chunks at 16 kHz (Yt8mError when none).

    With `align_to_video`, an audio stream that starts after (before) the first video stream is
    padded with silence (trimmed), so that sample 0 is at the frames' t = 0.
    Damage: packets are decoded one by one; one that does not decode is skipped and its time is
    filled with silence (from the timestamps of the next good frame), so the rest stays aligned.
    The spans affected are reported once, through `on_warning` (else Python's warnings, as
    `DecodeWarning`). Only when no audio at all decodes is it an error, which says that extracting
    without audio keeps the video's rgb features.
    """
    path = Path(path)
    container = _open_container(path)
    damaged: list[tuple[float, float]] = []
    decoded_any = False
    try:
        if not container.streams.audio:
            raise Yt8mError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        codec = video_lib.codec_name(stream)
        problem = video_lib.decoder_problem(stream)
        if problem is not None:
            raise Yt8mError(f"{path}: audio {problem}; {NO_AUDIO_HINT}")
        video_start = _video_start(container) if align_to_video else None
        resampler = _MonoResampler()
        align = None
        position = None  # source time (s) where the audio decoded so far ends
        pending_gap = False  # a packet was lost since the last good frame
        unit = 0  # samples per frame of the last good frame (codecs with fixed frame sizes)
        established: tuple[int, str] | None = None  # (sample rate, layout) of the first good frame
        last_error = ""
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as error:  # the demuxer cannot go on: the rest is lost
                last_error = _reason(error)
                damaged.append((position or 0.0, position or 0.0))
                break
            try:
                frames = packet.decode()
            except av.FFmpegError as error:
                last_error = _reason(error)
                span = _packet_span(packet, stream)
                damaged.append(span if span is not None else (position or 0.0, position or 0.0))
                pending_gap = True
                continue
            for frame in frames:
                shape = (frame.sample_rate, frame.layout.name)
                if pending_gap and established is not None and shape != established:
                    # right after damage, a frame in another format is the decoder misreading
                    # garbage as a header (MP2: 11025 Hz for a 48 kHz stream): damaged too
                    start = frame.time if frame.time is not None else (position or 0.0)
                    damaged.append((start, start + frame.samples / established[0]))
                    continue
                if established is None:
                    established = shape
                if align is None:
                    offset = 0.0 if (video_start is None or frame.time is None) else frame.time - video_start
                    align = _Aligner(offset)
                elif pending_gap and frame.time is not None and position is not None:
                    missing = _missing_samples(frame.time - position, frame.sample_rate, unit)
                    if missing > 0:  # the lost packets' time: silence
                        for chunk in resampler.push(_silence_like(frame, missing)):
                            yield align(chunk)
                    elif missing < 0:  # garbage that decoded as sound: drop as much of what follows
                        align.cut += int(round(-missing * SAMPLE_RATE / frame.sample_rate))
                pending_gap = False
                decoded_any = True
                unit = frame.samples
                if frame.time is not None:
                    position = frame.time + frame.samples / frame.sample_rate
                for chunk in resampler.push(frame):
                    yield align(chunk)
        for chunk in resampler.finish():
            yield align(chunk)
        if damaged and not decoded_any:
            raise Yt8mError(
                f"{path}: no audio could be decoded ({codec!r} stream damaged or unsupported: {last_error}); "
                f"{NO_AUDIO_HINT}"
            )
    finally:
        container.close()
        if damaged and decoded_any:
            seconds = video_lib.describe_spans([span for span in damaged])
            video_lib.emit_warning(
                f"{path}: {len(damaged)} damaged audio packet(s) at {seconds}: that audio is silence",
                on_warning,
            )


def read_waveform(path: str | os.PathLike) -> np.ndarray:
    """The whole first audio stream as mono float32 at 16 kHz (for short files and tests)."""
    chunks = list(iter_waveform(path))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def iter_audio_examples(
    path: str | os.PathLike,
    hop_seconds: float = MEDIAPIPE_HOP_SECONDS,
    pad_final: bool | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[np.ndarray]:
    """Stream a file's log-mel examples [96, 64], one at a time, decoding only as far as consumed.

    Damaged packets become silence and are reported through `on_warning` (see `iter_waveform`).
    """
    framer = LogMelFramer(hop_seconds, pad_final)
    for chunk in iter_waveform(path, on_warning=on_warning):
        yield from framer.push(chunk)
    yield from framer.finish()
