"""Streaming frame sampling from video files with OpenCV (REFERENCE.md §3).

Frames are read one at a time: every frame is `grab()`bed (demuxed and decoded, which inter-frame
codecs require) but only the sampled ones are `retrieve()`d (colour-converted and copied), so
skipped frames cost little and memory never holds more than one frame. Two sampling rules:

- `mediapipe` (default): one frame per target time t_k = k / fps (k = 0, 1, 2, ...; with the
  default fps 1: t = 0, 1, 2, ... s), each the first frame whose timestamp is >= t_k, as
  MediaPipe's YT8M graph resamples at 1.0 fps from timestamp 0. The first frame is always taken
  at t = 0. A source slower than `fps` repeats a frame for every target it covers, so the frame
  count stays one per 1/fps seconds (floor(last timestamp * fps) + 1).
- `legacy`: the loop of the old Python extractor (youtube-8m `feature_extractor`
  `frame_iterator(every_ms=1000/fps)`), re-enacted on frame timestamps: with `pos` the timestamp
  of the last frame read (0 before any), it remembers `last = pos`, takes the next frame, then
  reads and drops frames while `pos < last + every_ms`, sets `last = pos` and takes the frame
  after that one. The first frame is the one at t = 0; after that it takes the frame right after
  the first frame at or past each further second (at 10 fps: t = 0, 1.1, 2.1, 3.1 s ...). The
  step is relative to the previous `last`, so when 1000 ms is not a multiple of the frame
  interval the choice drifts by the excess each second, as the old code did.

Images are RGB uint8 [H, W, 3] (OpenCV decodes BGR; converted here) and upright: OpenCV's
automatic orientation applies the display-rotation metadata (phone videos).
Timestamps come from the decoder (CAP_PROP_POS_MSEC, the frame's presentation time); when a
container gives none (0 or not increasing), the frame index / nominal fps is used instead,
with `FALLBACK_FPS` where the container states no frame rate either.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

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
SAMPLING_LEGACY = "legacy"
SAMPLING_RULES = (SAMPLING_MEDIAPIPE, SAMPLING_LEGACY)
DEFAULT_SAMPLING = SAMPLING_MEDIAPIPE
DEFAULT_FPS = 1.0
DEFAULT_MAX_FRAMES = MAX_FRAMES  # 0 = no limit
# Used for timestamps only when a file has neither frame timestamps nor a frame rate.
FALLBACK_FPS = 25.0
MAX_PLAUSIBLE_FPS = 1000.0
# Tolerance of timestamp comparisons (decoder times like 2999.9999999 ms).
TIME_EPSILON = 1e-6
# A file is "truncated" when its frames end before this share of the duration its video stream
# states, minus the slack (only checked where the stream states one, e.g. .mp4 / .mov).
TRUNCATED_SHARE = 0.9
TRUNCATED_SLACK_SECONDS = 1.0
LEGACY_START_MS = -99999.0  # the old extractor's initial `last_ts`

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".mpe", ".flv", ".wmv",
        ".3gp", ".3g2", ".ts", ".mts", ".m2ts", ".ogv", ".ogg", ".vob", ".divx", ".asf", ".mxf",
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


def check_sampling(sampling: str) -> str:
    if sampling not in SAMPLING_RULES:
        raise Yt8mError(f"unknown sampling rule {sampling!r}; choose {' or '.join(SAMPLING_RULES)}")
    return sampling


def _check_fps(fps: float) -> float:
    if not (fps > 0 and math.isfinite(fps)):
        raise Yt8mError(f"frames per second must be > 0, got {fps}")
    return float(fps)


def open_capture(path: str | os.PathLike) -> cv2.VideoCapture:
    """Open a video with OpenCV's FFmpeg backend, or raise Yt8mError naming the file and the reason."""
    path = Path(path)
    if not path.exists():
        raise Yt8mError(f"{path}: no such file")
    if path.is_dir():
        raise Yt8mError(f"{path}: is a folder, not a video file")
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as error:
        raise Yt8mError(f"{path}: cannot be read ({error.strerror or error})") from None
    if size == 0:
        raise Yt8mError(f"{path}: empty file")
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


def stated_stream_duration(path: str | os.PathLike) -> float | None:
    """The duration the first video stream's header states (None when it states none, or unreadable).

    Per stream, not per container: a longer audio track does not count.
    """
    import av  # lazy: only needed for this check

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            if stream.duration is None or stream.time_base is None:
                return None
            seconds = float(stream.duration * stream.time_base)
    except (av.FFmpegError, OSError):
        return None
    return seconds if seconds > 0 else None


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Container metadata of a video (size as displayed, after rotation); Yt8mError if unreadable."""
    capture = open_capture(path)
    try:
        return _info_from_capture(Path(path), capture)
    finally:
        capture.release()


class _MediapipeRule:
    """Targets t_k = k / fps; each is served by the first frame at or after it (repeats allowed)."""

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


class _LegacyRule:
    """The old extractor's read loop as a per-frame decision (see the module docstring)."""

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


def _rule(sampling: str, fps: float) -> _MediapipeRule | _LegacyRule:
    check_sampling(sampling)
    return _MediapipeRule(fps) if sampling == SAMPLING_MEDIAPIPE else _LegacyRule(fps)


def select_frames(
    timestamps: list[float] | np.ndarray,
    fps: float = DEFAULT_FPS,
    sampling: str = DEFAULT_SAMPLING,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> list[int]:
    """Indices of the source frames a rule takes, given every frame's timestamp (seconds).

    The same decisions `iter_frames` makes while decoding, as a pure function (repeats appear
    as repeated indices).
    """
    rule = _rule(sampling, _check_fps(fps))
    chosen: list[int] = []
    for index, timestamp in enumerate(timestamps):
        for _ in range(rule.takes(float(timestamp))):
            chosen.append(index)
            if max_frames and len(chosen) >= max_frames:
                return chosen
    return chosen


class _Clock:
    """Frame timestamps from the decoder, made robust to missing or non-increasing values."""

    def __init__(self, nominal_fps: float | None) -> None:
        self.step = 1.0 / (nominal_fps or FALLBACK_FPS)
        self.previous: float | None = None

    def time_of(self, capture: cv2.VideoCapture) -> float:
        ms = capture.get(cv2.CAP_PROP_POS_MSEC)
        decoded = ms / 1000.0 if math.isfinite(ms) else None
        if self.previous is None:
            value = max(0.0, decoded) if decoded is not None else 0.0
        elif decoded is not None and decoded > self.previous + TIME_EPSILON:
            value = decoded
        else:
            value = self.previous + self.step
        self.previous = value
        return value


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def iter_frames(
    path: str | os.PathLike,
    fps: float = DEFAULT_FPS,
    sampling: str = DEFAULT_SAMPLING,
    max_frames: int = DEFAULT_MAX_FRAMES,
    check_truncation: bool = True,
) -> Iterator[Frame]:
    """Yield the sampled frames of a video lazily, as `Frame(timestamp, rgb_image)`.

    `max_frames` caps the count (0 = no cap) and stops decoding there. Raises Yt8mError naming the
    file when it cannot be opened, has no decodable frame, or (with `check_truncation`) its
    frames end well before the duration its video stream states (a truncated file).
    """
    fps = _check_fps(fps)
    if max_frames < 0:
        raise Yt8mError(f"max frames must be >= 0 (0 = no limit), got {max_frames}")
    path = Path(path)
    rule = _rule(sampling, fps)
    capture = open_capture(path)
    try:
        info = _info_from_capture(path, capture)
        clock = _Clock(info.fps)
        grabbed = emitted = 0
        timestamp = 0.0
        while True:
            try:
                ok = capture.grab()
            except cv2.error as error:
                raise Yt8mError(f"{path}: decoding failed at frame {grabbed} ({error})") from None
            if not ok:
                break
            timestamp = clock.time_of(capture)
            grabbed += 1
            repeats = rule.takes(timestamp)
            if not repeats:
                continue
            ok, image = capture.retrieve()
            if not ok or image is None:
                raise Yt8mError(f"{path}: frame {grabbed - 1} could not be decoded")
            rgb = _to_rgb(image)
            for _ in range(repeats):
                yield Frame(timestamp, rgb)
                emitted += 1
                if max_frames and emitted >= max_frames:
                    return
        if grabbed == 0:
            raise Yt8mError(f"{path}: no video frames could be decoded")
        if check_truncation:
            stated = stated_stream_duration(path)
            decoded = timestamp + clock.step
            if stated is not None and decoded < TRUNCATED_SHARE * stated - TRUNCATED_SLACK_SECONDS:
                raise Yt8mError(
                    f"{path}: truncated or corrupt: frames end at {decoded:.1f} s "
                    f"of the {stated:.1f} s the file states"
                )
    finally:
        capture.release()


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
