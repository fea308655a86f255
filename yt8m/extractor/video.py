"""Frame sampling from video files (REFERENCE.md §3): probing, two decoders, three rules.

`probe(path)` is the cheap first look (PyAV, headers + the first frame): it names why a file
cannot be extracted (no such file, empty, unreadable format, no video stream, codec without a
decoder) before any model loads.

Decoders (`decoder=`): `pyav` decodes with PyAV; `opencv` with OpenCV's FFmpeg backend (what
MediaPipe's YT8M graph uses, `OpenCvVideoDecoderCalculator`); `auto` (default) uses PyAV and
falls back to OpenCV only when PyAV cannot open or decode the stream. Both give the same frames:
PyAV's frames are converted exactly as OpenCV's backend converts them (swscale to BGR24 with
bicubic filtering, then to RGB), which makes them bit-identical on the codecs tested (H.264,
MPEG-4, MJPEG, VP9, AV1, 10-bit, odd sizes), and timestamps are computed as OpenCV computes
CAP_PROP_POS_MSEC ((pts - stream start) x time base). PyAV is preferred because it decodes
every codec of its FFmpeg (OpenCV's bundled FFmpeg may lack AV1), skips a damaged packet instead
of stopping, names the codec in errors, and keeps the previous decoded frame without converting
it, which MediaPipe's rule needs. Frames are decoded one at a time and only the sampled ones are
converted, so memory never holds more than two frames. (With OpenCV, MediaPipe's rule converts
every frame: `retrieve()` no longer works once the next frame is grabbed.)

Sampling rules (`sampling=`), all on the frames' timestamps:

- `mediapipe` (default): MediaPipe's `PacketResamplerCalculator` exactly as the YT8M
  feature-extraction graph configures it (`frame_rate: 1.0`, `base_timestamp: 0`, no jitter,
  `flush_last_packet` true), in integer microseconds as MediaPipe computes (decoder time
  truncated to microseconds, indices rounded half away from zero). Target k is at
  first + round(k / fps) where `first` is the first frame's time rounded to the nearest
  target of the base. Each frame has the period index round((t - first) x fps); a frame whose
  index is below the current period is ignored. A frame of a later period first fills every
  skipped period with the PREVIOUS frame (not the nearest: a source slower than `fps` repeats the
  previous frame), then, if it is at or after the current target, that target gets the nearer of
  this frame and the previous one (a tie goes to this, the later, frame). At the end, the last
  frame is emitted once more if its own period got no output yet (flush_last_packet). At 29.97
  fps this takes the frame nearest to each second; a 10 s clip whose last frame is nearer to
  10 s than to 9 s gives 11 frames.
- `first-after`: yt8m's earlier reading of MediaPipe: one frame per target t_k = k / fps, the
  first frame whose timestamp is >= t_k (repeating a frame for every target it covers). Kept as
  a deliberate variant: it never looks back, so OpenCV converts only the sampled frames.
- `legacy`: the loop of the old Python extractor (youtube-8m `feature_extractor`
  `frame_iterator(every_ms=1000/fps)`), re-enacted on frame timestamps: with `pos` the timestamp
  of the last frame read (0 before any), it remembers `last = pos`, takes the next frame, then
  reads and drops frames while `pos < last + every_ms`, sets `last = pos` and takes the frame
  after that one. The first frame is the one at t = 0; after that it takes the frame right after
  the first frame at or past each further second (at 10 fps: t = 0, 1.1, 2.1, 3.1 s ...). The
  step is relative to the previous `last`, so when 1000 ms is not a multiple of the frame
  interval the choice drifts by the excess each second, as the old code did.

Images are RGB uint8 [H, W, 3] and upright (the display-rotation metadata of phone videos is
applied). `Frame.timestamp` is the source frame's time. When a container gives no timestamps
(missing or not increasing), the frame index / nominal fps is used instead, with `FALLBACK_FPS`
where the container states no frame rate either (MediaPipe's decoder would drop such frames).

Damage: a video packet that does not decode is skipped (the decoder continues from the next
one) and reported once through `on_warning`. A file whose frames end well before the duration
its header states for the video stream (Matroska/WebM: the stream's DURATION tag; a video-only
file: the container's duration) is reported as truncated. Formats that state no duration up
front (AVI without index, MPEG-TS, Ogg) cannot be checked.

Warnings about one file go to `on_warning(message)` when given, else to Python's `warnings`
as `DecodeWarning`; each names the file.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from yt8m.core import MAX_FRAMES, Yt8mError

# Quiet OpenCV's and its FFmpeg's own console messages ("moov atom not found", backend
# warnings): every problem is reported once, as a Yt8mError naming the file. A user's own
# setting of these variables wins. FFmpeg's level is read when its backend is first used;
# OpenCV's at import, and cv2 may already be imported (Keras imports it), hence setLogLevel.
_USER_LOG_LEVEL = "OPENCV_LOG_LEVEL" in os.environ
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402  (after the logging settings above)

if not _USER_LOG_LEVEL:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

SAMPLING_MEDIAPIPE = "mediapipe"
SAMPLING_FIRST_AFTER = "first-after"
SAMPLING_LEGACY = "legacy"
SAMPLING_RULES = (SAMPLING_MEDIAPIPE, SAMPLING_FIRST_AFTER, SAMPLING_LEGACY)
DEFAULT_SAMPLING = SAMPLING_MEDIAPIPE
DECODER_AUTO = "auto"
DECODER_PYAV = "pyav"
DECODER_OPENCV = "opencv"
DECODERS = (DECODER_AUTO, DECODER_PYAV, DECODER_OPENCV)
DEFAULT_DECODER = DECODER_AUTO
DEFAULT_FPS = 1.0
DEFAULT_MAX_FRAMES = MAX_FRAMES  # 0 = no limit
# Used for timestamps only when a file has neither frame timestamps nor a frame rate.
FALLBACK_FPS = 25.0
MAX_PLAUSIBLE_FPS = 1000.0
# Tolerance of timestamp comparisons (decoder times like 2999.9999999 ms).
TIME_EPSILON = 1e-6
# MediaPipe's clock: int64 microseconds. Seconds -> microseconds truncates as its decoder does;
# the small epsilon undoes float error (1.001 s * 1e6 = 1000999.9999999999), far below the
# 1/9 us steps of real time bases.
MICROSECONDS = 1_000_000
MICROSECOND_EPSILON = 1e-3
# A file is "truncated" when its frames end before this share of the duration its video stream
# states, minus the slack.
TRUNCATED_SHARE = 0.9
TRUNCATED_SLACK_SECONDS = 1.0
LEGACY_START_MS = -99999.0  # the old extractor's initial `last_ts`
# How OpenCV's FFmpeg backend converts decoded frames (cap_ffmpeg_impl.hpp: sws to BGR24,
# SWS_BICUBIC); PyAV frames are converted the same way so both decoders give the same pixels.
OPENCV_PIXEL_FORMAT = "bgr24"
OPENCV_INTERPOLATION = "BICUBIC"
MAX_DAMAGE_SPANS = 5  # damaged time spans listed in a warning, then "..."
# `probe` gives up looking for a first decodable frame after this many packets (a file whose
# first few packets are damaged still probes fine).
PROBE_MAX_PACKETS = 64

# Extensions a folder scan picks up: every container the decoders read that usually holds video
# (.gif included: FFmpeg decodes it like any video). `.ogg` is listed because Ogg often holds
# Theora video; an audio-only one is then reported by `probe` ("has no video stream").
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".mpe", ".flv", ".wmv",
        ".3gp", ".3g2", ".ts", ".mts", ".m2ts", ".ogv", ".ogg", ".vob", ".divx", ".asf", ".mxf",
        ".gif", ".m2v", ".f4v", ".nut", ".y4m", ".dv",
    }
)


class Frame(NamedTuple):
    """One sampled frame: its presentation time in seconds and the RGB uint8 [H, W, 3] image."""

    timestamp: float
    image: np.ndarray


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (any field may be unknown: None)."""

    path: Path
    width: int
    height: int
    fps: float | None
    frame_count: int | None
    duration: float | None
    rotation: int  # display rotation in degrees as OpenCV reports it (already applied to frames)


def is_video_file(path: str | os.PathLike) -> bool:
    """Whether the file name has one of the usual video extensions (for directory scans)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def split_by_extension(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], dict[str, int]]:
    """Split a folder listing into video files and a count of the skipped ones per extension.

    For scan summaries ("skipped 3 .txt, 1 .jpg"): files without an extension count under "".
    """
    videos: list[Path] = []
    skipped: dict[str, int] = {}
    for entry in paths:
        path = Path(entry)
        if is_video_file(path):
            videos.append(path)
        else:
            suffix = path.suffix.lower()
            skipped[suffix] = skipped.get(suffix, 0) + 1
    return videos, skipped


@dataclass(frozen=True)
class VideoProbe:
    """What one cheap look at a file says (see `probe`): `ok`, or the one-line `reason` why not.

    Sizes are as displayed (after `rotation`, OpenCV's convention: degrees clockwise the decoder
    turns the frames). Unknown values are None. `audio_problem` says why the audio stream would
    not decode (its codec), while the video may still be fine.
    """

    path: Path
    ok: bool
    reason: str | None = None
    has_video: bool = False
    has_audio: bool = False
    video_codec: str | None = None
    audio_codec: str | None = None
    duration: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    rotation: int = 0
    audio_problem: str | None = None

    @property
    def message(self) -> str:
        """`"<path>: <reason>"`, the one line a user sees for a bad file ("" when ok)."""
        return "" if self.ok else f"{self.path}: {self.reason}"

    def check(self) -> VideoProbe:
        """Return self when ok, else raise Yt8mError with `message`."""
        if not self.ok:
            raise Yt8mError(self.message)
        return self


def _file_problem(path: Path) -> str | None:
    """Why a path cannot be opened as a file at all (None when it can)."""
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a folder, not a video file"
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return "empty file" if size == 0 else None


def _ffmpeg_reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return str(text).split(":")[0].strip() or type(error).__name__


def codec_name(stream) -> str:
    """The codec of a PyAV stream as FFmpeg names it ("h264", "av1", ...; "unknown")."""
    context = getattr(stream, "codec_context", None)
    codec = getattr(context, "codec", None) if context is not None else None
    # canonical: the codec, not the decoder implementing it ("av1", not "libdav1d")
    name = getattr(codec, "canonical_name", None) or getattr(context, "name", None)
    return str(name) if name else "unknown"


def decoder_problem(stream) -> str | None:
    """Why FFmpeg has no decoder for a stream's codec (None when it has one)."""
    context = getattr(stream, "codec_context", None)
    if context is None:  # PyAV then exposes no codec name either
        return "codec is not supported (unknown to FFmpeg, or no decoder for it in this build)"
    return None


def _stream_fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if 0 < value <= MAX_PLAUSIBLE_FPS:
                return value
    return None


def _stream_duration(container, stream) -> float | None:
    """The video stream's stated duration, else the container's (seconds; None if unknown)."""
    if stream is not None:
        stated = _stated_video_duration(container, stream)
        if stated is not None:
            return stated
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def probe(path: str | os.PathLike, first_frame: bool = True) -> VideoProbe:
    """One cheap look at a file with PyAV: can it be extracted, and what does it hold.

    Opens the container once, reads its stream headers and (with `first_frame`, the default)
    decodes the first video frame only, which proves the decoder works and gives the rotation
    (display matrix). Never raises for a bad file: returns `ok=False` with one reason (no such
    file, empty file, unreadable / unknown format, no video stream, unsupported codec, no
    decodable frame). Milliseconds for ordinary files: nothing past the first frame is read.
    """
    path = Path(path)
    problem = _file_problem(path)
    if problem is not None:
        return VideoProbe(path, ok=False, reason=problem)
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        return VideoProbe(
            path,
            ok=False,
            reason=f"not a readable video (unknown format, or corrupt / truncated file: {_ffmpeg_reason(error)})",
        )
    except OSError as error:
        return VideoProbe(path, ok=False, reason=f"cannot be read ({error.strerror or error})")
    try:
        return _probe_container(path, container, first_frame)
    finally:
        container.close()


def _probe_container(path: Path, container, first_frame: bool) -> VideoProbe:
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    audio_codec = codec_name(audio) if audio is not None else None
    audio_problem = decoder_problem(audio) if audio is not None else None
    common = dict(has_audio=audio is not None, audio_codec=audio_codec, audio_problem=audio_problem)
    if video is None:
        kinds = "audio only" if audio is not None else "no audio or video stream"
        return VideoProbe(
            path,
            ok=False,
            reason=f"has no video stream ({kinds})",
            duration=_stream_duration(container, None),
            **common,
        )
    name = codec_name(video)
    info = dict(
        has_video=True, video_codec=name, duration=_stream_duration(container, video), fps=_stream_fps(video), **common
    )
    problem = decoder_problem(video)
    if problem is not None:
        return VideoProbe(path, ok=False, reason=f"video {problem}", **info)
    width, height = video.codec_context.width or None, video.codec_context.height or None
    rotation = 0
    if first_frame:
        frame, problem = _first_frame(container, video)
        if frame is None:
            reason = f"{problem} (video codec {name!r})"
            return VideoProbe(path, ok=False, reason=reason, width=width, height=height, **info)
        width, height = frame.width, frame.height
        rotation = int(round(-float(getattr(frame, "rotation", 0) or 0))) % 360
    if rotation in (90, 270) and width and height:
        width, height = height, width
    return VideoProbe(path, ok=True, width=width, height=height, rotation=rotation, **info)


def _first_frame(container, stream) -> tuple[av.VideoFrame | None, str]:
    """Decode the first frame of a stream: (frame, "") or (None, why not).

    Damaged packets are skipped as extraction skips them, up to `PROBE_MAX_PACKETS` packets.
    """
    error_text = ""
    packets = container.demux(stream)
    for _ in range(PROBE_MAX_PACKETS):
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.FFmpegError as error:
            error_text = _ffmpeg_reason(error)
            break
        try:
            for frame in packet.decode():
                return frame, ""
        except av.FFmpegError as error:
            error_text = _ffmpeg_reason(error)
    return None, "no video frame could be decoded" + (f" ({error_text})" if error_text else "")


class DecodeWarning(UserWarning):
    """A file was extracted, but part of it could not be decoded (the message names it)."""


WarningSink = Callable[[str], None]


def emit_warning(message: str, on_warning: WarningSink | None) -> None:
    """Send one warning to `on_warning`, or to Python's warnings as `DecodeWarning`."""
    if on_warning is not None:
        on_warning(message)
    else:
        warnings.warn(message, DecodeWarning, stacklevel=3)


def describe_spans(spans: list[tuple[float, float]]) -> str:
    """'1.5-1.6 s, 3.0-3.1 s' for damaged time spans (merged when they touch, the first few)."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 0.05:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    text = ", ".join(f"{start:.2f}-{end:.2f} s" for start, end in merged[:MAX_DAMAGE_SPANS])
    return text + (", ..." if len(merged) > MAX_DAMAGE_SPANS else "")


def check_sampling(sampling: str) -> str:
    if sampling not in SAMPLING_RULES:
        raise Yt8mError(f"unknown sampling rule {sampling!r}; choose one of {', '.join(SAMPLING_RULES)}")
    return sampling


def check_decoder(decoder: str) -> str:
    if decoder not in DECODERS:
        raise Yt8mError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    return decoder


def _check_fps(fps: float) -> float:
    if not (fps > 0 and math.isfinite(fps)):
        raise Yt8mError(f"frames per second must be > 0, got {fps}")
    return float(fps)


def _raise_file_problem(path: Path) -> None:
    problem = _file_problem(path)
    if problem is not None:
        raise Yt8mError(f"{path}: {problem}")


def open_capture(path: str | os.PathLike) -> cv2.VideoCapture:
    """Open a video with OpenCV's FFmpeg backend, or raise Yt8mError naming the file and the reason."""
    path = Path(path)
    _raise_file_problem(path)
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise Yt8mError(f"{path}: not a readable video (unknown format, or corrupt / truncated file)")
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return capture


def _positive(value: float) -> float | None:
    return float(value) if math.isfinite(value) and value > 0 else None


def _info_from_capture(path: Path, capture: cv2.VideoCapture) -> VideoInfo:
    fps = _positive(capture.get(cv2.CAP_PROP_FPS))
    if fps is not None and fps > MAX_PLAUSIBLE_FPS:  # some containers report the time base
        fps = None
    count = _positive(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frame_count = int(count) if count is not None else None
    duration = frame_count / fps if (frame_count and fps) else None
    rotation = int(capture.get(cv2.CAP_PROP_ORIENTATION_META) or 0) % 360
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    return VideoInfo(path, width, height, fps, frame_count, duration, rotation)


def _duration_tag(stream) -> float | None:
    """A Matroska/WebM stream's DURATION tag ('HH:MM:SS.nnnnnnnnn') in seconds."""
    text = next((value for key, value in stream.metadata.items() if key.upper() == "DURATION"), None)
    if not text:
        return None
    try:
        hours, minutes, seconds = text.strip().split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _stated_video_duration(container, stream) -> float | None:
    """The video stream's duration as the file's header states it (None when it states none).

    The stream's own duration (MP4/MOV), else its DURATION tag (Matroska/WebM), else the
    container's duration when the video is the only stream (an audio track may be longer).
    """
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    if not seconds:
        seconds = _duration_tag(stream)
    if not seconds and len(container.streams) == 1 and container.duration:
        seconds = container.duration / av.time_base
    return seconds if seconds and seconds > 0 else None


def stated_stream_duration(path: str | os.PathLike) -> float | None:
    """The duration the first video stream's header states (None when it states none, or unreadable).

    Per stream, not per container: a longer audio track does not count.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            return _stated_video_duration(container, container.streams.video[0])
    except (av.FFmpegError, OSError):
        return None


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Container metadata of a video as OpenCV reads it (size as displayed); Yt8mError if unreadable."""
    capture = open_capture(path)
    try:
        return _info_from_capture(Path(path), capture)
    finally:
        capture.release()


# --------------------------------------------------------------------------- sampling rules

PREVIOUS = 0  # an emission of the frame before the one just pushed
CURRENT = 1  # an emission of the frame just pushed


def _safe_round(value: float) -> int:
    """MediaPipe's MathUtil::SafeRound: half away from zero."""
    return math.trunc(value - 0.5) if value < 0.0 else math.trunc(value + 0.5)


def to_microseconds(seconds: float) -> int:
    """A decoder time in MediaPipe's int64 microseconds (truncated, as its decoder does)."""
    scaled = seconds * MICROSECONDS
    return math.trunc(scaled + MICROSECOND_EPSILON if scaled >= 0 else scaled - MICROSECOND_EPSILON)


class _MediapipeRule:
    """PacketResamplerCalculator without jitter, base_timestamp 0, flush_last_packet (module doc).

    `push(t)` returns the emissions decided by a frame at t seconds (PREVIOUS / CURRENT, in
    order); `finish()` those at the end of the stream (PREVIOUS = the last frame).
    """

    keeps_previous = True  # may emit a frame after the next one has been decoded

    def __init__(self, fps: float, base_us: int = 0) -> None:
        self.rate = fps
        self.base_us = base_us
        self.first_us: int | None = None
        self.period = 0
        self.last_us: int | None = None

    def _target(self, index: int) -> int:
        return self.first_us + _safe_round(index / self.rate * MICROSECONDS)

    def _index(self, time_us: int) -> int:
        return _safe_round((time_us - self.first_us) / MICROSECONDS * self.rate)

    def push(self, seconds: float) -> list[int]:
        now = to_microseconds(seconds)
        if self.first_us is None:
            first_index = _safe_round((now - self.base_us) / MICROSECONDS * self.rate)
            self.first_us = self.base_us + _safe_round(first_index / self.rate * MICROSECONDS)
        out: list[int] = []
        index = self._index(now)
        if index >= self.period:
            while index > self.period:  # periods without a frame of their own: the previous one
                if self.last_us is not None:
                    out.append(PREVIOUS)
                self.period += 1
            target = self._target(self.period)
            if now >= target:
                current = self.last_us is None or now - target <= target - self.last_us
                out.append(CURRENT if current else PREVIOUS)
                self.period += 1
        self.last_us = now
        return out

    def finish(self, end: float | None = None) -> list[int]:
        """flush_last_packet: the last frame for its own period when that got no output yet.

        `end` (seconds, exclusive) is the clip end the YT8M workflow passes as `end_time`
        (its `clip_end_time_sec`, the video's length): the flushed target must lie before it.
        """
        if self.last_us is None or self._index(self.last_us) != self.period:
            return []
        if end is not None and self._target(self.period) >= to_microseconds(end):
            return []
        self.period += 1
        return [PREVIOUS]


class _FirstAfterRule:
    """Targets t_k = k / fps; each is served by the first frame at or after it (repeats allowed)."""

    keeps_previous = False

    def __init__(self, fps: float) -> None:
        self.step = 1.0 / fps
        self.next_k = 0

    def takes(self, timestamp: float) -> int:
        """How many targets this frame serves (0 = skip it)."""
        count = 0
        while self.next_k * self.step <= timestamp + TIME_EPSILON:
            self.next_k += 1
            count += 1
        return count

    def push(self, seconds: float) -> list[int]:
        return [CURRENT] * self.takes(seconds)

    def finish(self, end: float | None = None) -> list[int]:
        return []


class _LegacyRule:
    """The old extractor's read loop as a per-frame decision (see the module docstring)."""

    keeps_previous = False

    def __init__(self, fps: float) -> None:
        self.every_ms = 1000.0 / fps
        self.last_ms = LEGACY_START_MS
        position_ms = 0.0  # CAP_PROP_POS_MSEC before any frame is read
        self.skipping = position_ms < self.every_ms + self.last_ms
        if not self.skipping:
            self.last_ms = position_ms

    def takes(self, timestamp: float) -> int:
        position_ms = timestamp * 1000.0
        if self.skipping:  # frame read (and dropped) inside the skip loop
            if position_ms + TIME_EPSILON * 1000.0 < self.every_ms + self.last_ms:
                return 0
            self.last_ms = position_ms
            self.skipping = False
            return 0
        # frame read right after the skip loop: taken
        if position_ms + TIME_EPSILON * 1000.0 < self.every_ms + self.last_ms:
            self.skipping = True
        else:
            self.last_ms = position_ms
        return 1

    def push(self, seconds: float) -> list[int]:
        return [CURRENT] * self.takes(seconds)

    def finish(self, end: float | None = None) -> list[int]:
        return []


_Rule = _MediapipeRule | _FirstAfterRule | _LegacyRule


def _rule(sampling: str, fps: float) -> _Rule:
    check_sampling(sampling)
    if sampling == SAMPLING_MEDIAPIPE:
        return _MediapipeRule(fps)
    return _FirstAfterRule(fps) if sampling == SAMPLING_FIRST_AFTER else _LegacyRule(fps)


def select_frames(
    timestamps: list[float] | np.ndarray,
    fps: float = DEFAULT_FPS,
    sampling: str = DEFAULT_SAMPLING,
    max_frames: int = DEFAULT_MAX_FRAMES,
    end: float | None = None,
) -> list[int]:
    """Indices of the source frames a rule takes, given every frame's timestamp (seconds).

    The same decisions `iter_frames` makes while decoding, as a pure function (repeats appear
    as repeated indices). `end` is where the video ends (default: the last timestamp plus the
    last frame interval, as for a constant-rate source).
    """
    rule = _rule(sampling, _check_fps(fps))
    chosen: list[int] = []
    index = -1
    for index, timestamp in enumerate(timestamps):
        for which in rule.push(float(timestamp)):
            chosen.append(index if which == CURRENT else index - 1)
            if max_frames and len(chosen) >= max_frames:
                return chosen
    if end is None and index >= 0:
        last = float(timestamps[index])
        end = last + (last - float(timestamps[index - 1]) if index >= 1 else 1.0 / fps)
    for _ in rule.finish(end):
        chosen.append(index)
        if max_frames and len(chosen) >= max_frames:
            break
    return chosen


# --------------------------------------------------------------------------- decoders


class _Clock:
    """Frame timestamps from the decoder, made robust to missing or non-increasing values."""

    def __init__(self, nominal_fps: float | None) -> None:
        self.step = 1.0 / (nominal_fps or FALLBACK_FPS)
        self.previous: float | None = None

    def time_from_ms(self, ms: float | None) -> float:
        """Seconds for a decoder time in milliseconds (None or NaN: none given)."""
        decoded = ms / 1000.0 if ms is not None and math.isfinite(ms) else None
        if self.previous is None:
            value = max(0.0, decoded) if decoded is not None else 0.0
        elif decoded is not None and decoded > self.previous + TIME_EPSILON:
            value = decoded
        else:
            value = self.previous + self.step
        self.previous = value
        return value

    def time_of(self, capture: cv2.VideoCapture) -> float:
        return self.time_from_ms(capture.get(cv2.CAP_PROP_POS_MSEC))


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class _Decoded:
    """One decoded frame: its time and a converter run at most once (cached)."""

    __slots__ = ("timestamp", "_convert", "_image")

    def __init__(self, timestamp: float, convert: Callable[[], np.ndarray]) -> None:
        self.timestamp = timestamp
        self._convert = convert
        self._image: np.ndarray | None = None

    def image(self) -> np.ndarray:
        if self._image is None:
            self._image = self._convert()
            self._convert = None
        return self._image


class _NoVideoStream(Yt8mError):
    """The container holds no video stream: no other decoder can help."""


class _Source:
    """A decoder's frames in display order; `end` is the time after the last one (or None)."""

    stable = True  # a _Decoded stays convertible after the next frame is decoded
    stated_duration: float | None = None
    end: float | None = None

    def frames(self) -> Iterator[_Decoded]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _OpenCvSource(_Source):
    """OpenCV's FFmpeg backend: grab every frame, retrieve (convert) only on demand."""

    stable = False  # retrieve() only works until the next grab()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.capture = open_capture(path)
        self.clock = _Clock(_info_from_capture(path, self.capture).fps)
        self.stated_duration = stated_stream_duration(path)

    def _retrieve(self, index: int) -> np.ndarray:
        ok, image = self.capture.retrieve()
        if not ok or image is None:
            raise Yt8mError(f"{self.path}: frame {index} could not be decoded")
        return _to_rgb(image)

    def frames(self) -> Iterator[_Decoded]:
        index = 0
        while True:
            try:
                ok = self.capture.grab()
            except cv2.error as error:
                raise Yt8mError(f"{self.path}: decoding failed at frame {index} ({error})") from None
            if not ok:
                break
            timestamp = self.clock.time_of(self.capture)
            self.end = timestamp + self.clock.step
            yield _Decoded(timestamp, lambda i=index: self._retrieve(i))
            index += 1
        if index == 0:
            raise Yt8mError(f"{self.path}: no video frames could be decoded")

    def close(self) -> None:
        self.capture.release()


def _rotate_upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """Turn a decoded image as its display matrix says (degrees counter-clockwise)."""
    turns = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _pyav_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB uint8 exactly as OpenCV's backend converts the same frame (BGR24, bicubic), upright."""
    bgr = frame.to_ndarray(format=OPENCV_PIXEL_FORMAT, interpolation=OPENCV_INTERPOLATION)
    return _rotate_upright(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), getattr(frame, "rotation", 0) or 0)


class _PyAvSource(_Source):
    """PyAV decoding packet by packet: a packet that does not decode is skipped and remembered."""

    def __init__(self, path: Path, on_warning: WarningSink | None) -> None:
        self.path = path
        self.on_warning = on_warning
        _raise_file_problem(path)
        try:
            self.container = av.open(str(path))
        except av.FFmpegError as error:
            raise Yt8mError(
                f"{path}: not a readable video (unknown format, or corrupt / truncated file: {_ffmpeg_reason(error)})"
            ) from None
        except OSError as error:
            raise Yt8mError(f"{path}: cannot be read ({error.strerror or error})") from None
        try:
            if not self.container.streams.video:
                kinds = "audio only" if self.container.streams.audio else "no audio or video stream"
                raise _NoVideoStream(f"{path}: has no video stream ({kinds})")
            self.stream = self.container.streams.video[0]
            problem = decoder_problem(self.stream)
            if problem is not None:
                raise Yt8mError(f"{path}: video {problem}")
            self.codec = codec_name(self.stream)
            self.stream.thread_type = "AUTO"
            self.clock = _Clock(_stream_fps(self.stream))
            self.stated_duration = _stated_video_duration(self.container, self.stream)
        except BaseException:
            self.container.close()
            raise
        self.damaged: list[tuple[float, float]] = []
        self.last_error = ""

    def _milliseconds(self, frame: av.VideoFrame) -> float | None:
        """CAP_PROP_POS_MSEC as OpenCV computes it: (pts - stream start) x time base x 1000."""
        pts = frame.pts if frame.pts is not None else frame.dts
        time_base = frame.time_base or self.stream.time_base
        if pts is None or time_base is None:
            return None
        start = self.stream.start_time or 0
        return float(pts - start) * (time_base.numerator / time_base.denominator) * 1000.0

    def _damaged_span(self, packet: av.Packet) -> tuple[float, float]:
        """From the last frame decoded to the end of the packet that failed: with frame threading
        the decoder reports an error a few packets after the one that caused it."""
        last_good = self.clock.previous or 0.0
        time_base = packet.time_base or self.stream.time_base
        if packet.pts is None or time_base is None:
            return last_good, last_good
        begin = float((packet.pts - (self.stream.start_time or 0)) * time_base)
        return min(last_good, begin), begin + float((packet.duration or 0) * time_base)

    def _decoded(self) -> Iterator[av.VideoFrame]:
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as error:  # the demuxer cannot go on (cut or garbled file)
                self.last_error = _ffmpeg_reason(error)
                return
            try:
                yield from packet.decode()
            except av.FFmpegError as error:
                self.damaged.append(self._damaged_span(packet))
                self.last_error = _ffmpeg_reason(error)

    def frames(self) -> Iterator[_Decoded]:
        count = 0
        for frame in self._decoded():
            timestamp = self.clock.time_from_ms(self._milliseconds(frame))
            self.end = timestamp + self.clock.step
            yield _Decoded(timestamp, lambda f=frame: _pyav_rgb(f))
            count += 1
        if count == 0:
            reason = f": {self.last_error}" if self.last_error else ""
            raise Yt8mError(f"{self.path}: no video frames could be decoded (video codec {self.codec!r}{reason})")

    def close(self) -> None:
        """Close the file; report the damaged packets met (once), also when reading stopped early."""
        self.container.close()
        if self.damaged and self.clock.previous is not None:
            emit_warning(
                f"{self.path}: {len(self.damaged)} damaged video packet(s) skipped at "
                f"{describe_spans(self.damaged)} (the frames around them repeat)",
                self.on_warning,
            )
            self.damaged = []


def _open_source(path: Path, decoder: str, on_warning: WarningSink | None) -> tuple[_Source, Iterator[_Decoded]]:
    """The decoder's source and its frame iterator, the first frame already decoded (auto: fallback)."""
    if decoder == DECODER_OPENCV:
        source: _Source = _OpenCvSource(path)
        return source, source.frames()
    try:
        source = _PyAvSource(path, on_warning)
    except _NoVideoStream:
        raise
    except Yt8mError:
        if decoder == DECODER_PYAV or not _opencv_decodes(path):
            raise
        source = _OpenCvSource(path)
        return source, source.frames()
    frames = source.frames()
    if decoder == DECODER_AUTO:
        try:
            first = next(frames)
        except Yt8mError:
            source.close()
            if not _opencv_decodes(path):
                raise
            source = _OpenCvSource(path)
            return source, source.frames()
        except StopIteration:  # pragma: no cover - frames() raises instead
            return source, iter(())
        return source, itertools.chain([first], frames)
    return source, frames


def _opencv_decodes(path: Path) -> bool:
    """Whether OpenCV opens the file and decodes its first frame (for the automatic fallback)."""
    if _file_problem(path) is not None:
        return False
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        return bool(capture.isOpened() and capture.grab())
    except cv2.error:
        return False
    finally:
        capture.release()


def iter_frames(
    path: str | os.PathLike,
    fps: float = DEFAULT_FPS,
    sampling: str = DEFAULT_SAMPLING,
    max_frames: int = DEFAULT_MAX_FRAMES,
    check_truncation: bool = True,
    decoder: str = DEFAULT_DECODER,
    on_warning: WarningSink | None = None,
) -> Iterator[Frame]:
    """Yield the sampled frames of a video lazily, as `Frame(timestamp, rgb_image)`.

    `max_frames` caps the count (0 = no cap) and stops decoding there. `decoder`: auto / pyav /
    opencv (module docstring). Raises Yt8mError naming the file when it cannot be opened, has no
    video stream or no decodable frame (naming the codec), or (with `check_truncation`) its
    frames end well before the duration its header states for the video stream (a truncated
    file). Damaged packets that were skipped are reported once through `on_warning`.
    """
    fps = _check_fps(fps)
    if max_frames < 0:
        raise Yt8mError(f"max frames must be >= 0 (0 = no limit), got {max_frames}")
    path = Path(path)
    rule = _rule(sampling, fps)
    check_decoder(decoder)
    source, decoded = _open_source(path, decoder, on_warning)
    try:
        emitted = 0
        previous: _Decoded | None = None
        for current in decoded:
            for which in rule.push(current.timestamp):
                chosen = current if which == CURRENT else previous
                yield Frame(chosen.timestamp, chosen.image())
                emitted += 1
                if max_frames and emitted >= max_frames:
                    return
            if rule.keeps_previous and not source.stable:
                current.image()  # OpenCV: convert now, the next grab() overwrites it
            previous = current
        for _ in rule.finish(source.end):
            yield Frame(previous.timestamp, previous.image())
            emitted += 1
            if max_frames and emitted >= max_frames:
                return
        stated = source.stated_duration
        if check_truncation and stated is not None and source.end is not None:
            if source.end < TRUNCATED_SHARE * stated - TRUNCATED_SLACK_SECONDS:
                raise Yt8mError(
                    f"{path}: truncated or corrupt: frames end at {source.end:.1f} s "
                    f"of the {stated:.1f} s the file states"
                )
    finally:
        source.close()


def iter_all_frames(path: str | os.PathLike) -> Iterator[Frame]:
    """Every frame, each retrieved (what a naive read-every-frame extractor does; benchmarks)."""
    path = Path(path)
    capture = open_capture(path)
    try:
        clock = _Clock(_info_from_capture(path, capture).fps)
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                return
            yield Frame(clock.time_of(capture), _to_rgb(image))
    finally:
        capture.release()
