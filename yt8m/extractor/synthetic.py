"""Synthetic videos with known content: per-second colours, moving shapes and a sine tone.

Used by the tests (frame sampling is checked by colour: the frame taken at second k must show
colour k), by the benchmark and by `yt8m demo` (a small labelled set whose classes differ
visibly and audibly, for fine-tuning demonstrations). Written with PyAV: H.264 (libx264) or
MPEG-4 Part 2 video and AAC audio in an .mp4 (other containers by file suffix).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from yt8m.core import Yt8mError

DEFAULT_FPS = 10.0
DEFAULT_SIZE = (64, 48)  # (width, height); even sizes, as yuv420p requires
DEFAULT_SAMPLE_RATE = 44100
DEFAULT_TONE_HZ = 440.0
DEFAULT_VIDEO_CODEC = "h264"
AUDIO_CODEC = "aac"
AUDIO_CHANNELS = 2  # stereo, so readers must average channels to mono
TONE_AMPLITUDE = 0.5
AUDIO_FRAME_SAMPLES = 1024  # AAC frame size
AUDIO_KINDS = ("sine", "silent")
# Distinct, saturated colours (RGB); second k of a default video shows PALETTE[k % len].
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 25),
    (25, 200, 60),
    (30, 60, 230),
    (240, 220, 30),
    (200, 40, 200),
    (40, 220, 220),
    (250, 140, 20),
    (120, 120, 120),
)
# A square that moves over the background: direction names, or a circle / pulse.
MOTIONS = ("right", "left", "down", "up", "circle", "pulse")
MOTION_CYCLE_SECONDS = 2.0
SQUARE_FRACTION = 0.3  # side of the moving square relative to the smaller frame side

RGB = tuple[int, int, int]


def _even(value: int, what: str) -> int:
    if value < 2 or value % 2:
        raise ValueError(f"{what} must be an even number >= 2 (yuv420p), got {value}")
    return value


def _fps_fraction(fps: float) -> Fraction:
    """NTSC-style rates (29.97) become 30000/1001; others their nearest simple fraction."""
    return Fraction(fps).limit_denominator(1001)


def _contrast(color: Sequence[int]) -> RGB:
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luminance > 110 else (255, 255, 255)


def _square_position(motion: str, phase: float, width: int, height: int, side: int) -> tuple[int, int, int]:
    """Top-left corner and side of the square at `phase` in [0, 1) of one motion cycle."""
    span_x, span_y = width - side, height - side
    if motion == "right":
        return int(phase * span_x), span_y // 2, side
    if motion == "left":
        return int((1.0 - phase) * span_x), span_y // 2, side
    if motion == "down":
        return span_x // 2, int(phase * span_y), side
    if motion == "up":
        return span_x // 2, int((1.0 - phase) * span_y), side
    if motion == "circle":
        angle = 2.0 * math.pi * phase
        x = span_x / 2 * (1.0 + 0.9 * math.cos(angle))
        y = span_y / 2 * (1.0 + 0.9 * math.sin(angle))
        return int(x), int(y), side
    if motion == "pulse":
        grown = max(2, int(side * (0.5 + 1.5 * abs(math.sin(math.pi * phase)))))
        grown = min(grown, width, height)
        return (width - grown) // 2, (height - grown) // 2, grown
    raise ValueError(f"unknown motion {motion!r}; choose from {', '.join(MOTIONS)}")


def render_frame(
    index: int,
    fps: Fraction,
    width: int,
    height: int,
    colors: Sequence[RGB],
    motion: str | None,
    phase_offset: float = 0.0,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame `index` as RGB uint8 [H, W, 3]: second k's colour, the moving square on top."""
    second = int(Fraction(index) / fps)
    color = colors[second % len(colors)]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = color
    if motion:
        t = float(Fraction(index) / fps)
        phase = (t / MOTION_CYCLE_SECONDS + phase_offset) % 1.0
        side = max(2, int(SQUARE_FRACTION * min(width, height)))
        x, y, side = _square_position(motion, phase, width, height, side)
        image[y : y + side, x : x + side] = _contrast(color)
    if noise > 0 and rng is not None:  # uniform integer noise of about `noise` levels (cheap)
        spread = max(1, int(round(noise)))
        jitter = rng.integers(-spread, spread + 1, size=image.shape, dtype=np.int16)
        image = np.clip(image.astype(np.int16) + jitter, 0, 255).astype(np.uint8)
    return image


def make_waveform(
    seconds: float, kind: str, sample_rate: int = DEFAULT_SAMPLE_RATE, tone_hz: float = DEFAULT_TONE_HZ
) -> np.ndarray:
    """Mono float32 waveform in [-1, 1]: a sine tone or digital silence."""
    if kind not in AUDIO_KINDS:
        raise ValueError(f"audio must be one of {AUDIO_KINDS} or None, got {kind!r}")
    count = max(1, int(round(seconds * sample_rate)))
    if kind == "silent":
        return np.zeros(count, dtype=np.float32)
    t = np.arange(count, dtype=np.float64) / sample_rate
    return (TONE_AMPLITUDE * np.sin(2.0 * np.pi * tone_hz * t)).astype(np.float32)


def write_test_video(
    path: str | Path,
    seconds: float,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    colors: Sequence[RGB] | RGB | None = None,
    motion: str | None = None,
    audio: str | None = "sine",
    tone_hz: float = DEFAULT_TONE_HZ,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    codec: str = DEFAULT_VIDEO_CODEC,
    rotation: int = 0,
    faststart: bool = False,
    phase_offset: float = 0.0,
    noise: float = 0.0,
    seed: int = 0,
    audio_offset: float = 0.0,
) -> Path:
    """Write a video whose second k shows `colors[k % len(colors)]` (RGB) over its whole frame.

    `seconds` may be fractional (a 0.4 s clip has round(0.4 * fps) frames, at least one).
    `motion` adds a contrasting square moving as named in `MOTIONS`. `audio`: "sine" (a
    `tone_hz` tone on both stereo channels), "silent" (an audio stream of zeros) or None (no audio
    stream). `rotation` stores display-rotation metadata (degrees counter-clockwise, as phones
    do); players and OpenCV rotate the decoded frames accordingly. `faststart` puts the index at
    the front of the .mp4. `audio_offset` starts the audio stream that many seconds after the
    video (its timestamps, not silence in the samples). Returns the path.
    """
    path = Path(path)
    width, height = _even(int(size[0]), "width"), _even(int(size[1]), "height")
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if colors is None:
        palette: Sequence[RGB] = PALETTE
    elif len(colors) == 3 and all(isinstance(c, (int, np.integer)) for c in colors):
        palette = [tuple(int(c) for c in colors)]  # type: ignore[list-item]
    else:
        palette = [tuple(int(c) for c in color) for color in colors]  # type: ignore[union-attr]
    rate = _fps_fraction(fps)
    frame_count = max(1, int(round(seconds * float(rate))))
    rng = np.random.default_rng(seed) if noise > 0 else None
    path.parent.mkdir(parents=True, exist_ok=True)

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        video = container.add_stream(codec, rate=rate)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        if codec in ("h264", "libx264"):
            video.options = {"preset": "ultrafast"}
        if rotation:
            video.set_display_rotation(rotation)
        audio_stream = None
        if audio is not None:
            waveform = make_waveform(seconds, audio, sample_rate, tone_hz)
            audio_stream = container.add_stream(AUDIO_CODEC, rate=sample_rate)
            audio_stream.layout = "stereo"
        time_base = Fraction(1, 1) / rate
        for index in range(frame_count):
            image = render_frame(index, rate, width, height, palette, motion, phase_offset, noise, rng)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio_stream is not None:
            stereo = np.stack([waveform] * AUDIO_CHANNELS)
            for start in range(0, waveform.size, AUDIO_FRAME_SAMPLES):
                chunk = np.ascontiguousarray(stereo[:, start : start + AUDIO_FRAME_SAMPLES])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate = sample_rate
                frame.pts = start + int(round(audio_offset * sample_rate))
                frame.time_base = Fraction(1, sample_rate)
                container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode(None))
    return path


@dataclass(frozen=True)
class ClassStyle:
    """What makes one synthetic class recognisable: a colour, a motion and a tone."""

    name: str
    color: RGB
    motion: str
    tone_hz: float


CLASS_STYLES: tuple[ClassStyle, ...] = (
    ClassStyle("red_right", PALETTE[0], "right", 330.0),
    ClassStyle("green_circle", PALETTE[1], "circle", 523.0),
    ClassStyle("blue_down", PALETTE[2], "down", 784.0),
    ClassStyle("yellow_pulse", PALETTE[3], "pulse", 1175.0),
    ClassStyle("magenta_left", PALETTE[4], "left", 1568.0),
    ClassStyle("cyan_up", PALETTE[5], "up", 2093.0),
    ClassStyle("orange_circle", PALETTE[6], "circle", 2637.0),
    ClassStyle("grey_pulse", PALETTE[7], "pulse", 3136.0),
)
COLOR_JITTER = 18  # per-video colour variation, so videos of a class are not identical
TONE_JITTER = 0.03  # relative


def make_labelled_video_set(
    directory: str | Path,
    classes: int | Sequence[str] = 3,
    per_class: int = 4,
    seconds: float = 4.0,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    audio: str | None = "sine",
    seed: int = 0,
) -> list[tuple[Path, str]]:
    """Write `per_class` videos for each class into `directory/<class>/<class>_<k>.mp4`.

    `classes` is a count (the first styles of `CLASS_STYLES`) or names (styles assigned in order;
    at most len(CLASS_STYLES)). Each class has its own colour, motion and tone; each video jitters
    colour, motion phase, tone and adds mild noise. Returns (path, class name) pairs, ready for
    `yt8m extract --labels-from-folders`.
    """
    if isinstance(classes, int):
        names = [style.name for style in CLASS_STYLES[:classes]]
    else:
        names = [str(name) for name in classes]
    if not names or len(names) > len(CLASS_STYLES):
        raise Yt8mError(f"between 1 and {len(CLASS_STYLES)} synthetic classes are available, asked for {len(names)}")
    if len(set(names)) != len(names):
        raise Yt8mError("synthetic class names must be unique")
    if per_class < 1:
        raise Yt8mError(f"per_class must be >= 1, got {per_class}")
    rng = random.Random(seed)
    directory = Path(directory)
    written: list[tuple[Path, str]] = []
    for name, style in zip(names, CLASS_STYLES):
        for k in range(per_class):
            color = tuple(int(np.clip(c + rng.randint(-COLOR_JITTER, COLOR_JITTER), 0, 255)) for c in style.color)
            tone = style.tone_hz * (1.0 + rng.uniform(-TONE_JITTER, TONE_JITTER))
            path = write_test_video(
                directory / name / f"{name}_{k:03d}.mp4",
                seconds,
                fps=fps,
                size=size,
                colors=[color],  # type: ignore[list-item]
                motion=style.motion,
                audio=audio,
                tone_hz=tone,
                phase_offset=rng.random(),
                noise=4.0,
                seed=rng.randrange(2**31),
            )
            written.append((path, name))
    return written
