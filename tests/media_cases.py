"""Small media files for decoding tests, written with PyAV: each case a real file, built the way
real encoders and muxers build it, then damaged the way real files are (bytes of one packet
replaced or cut, the file cut short, an unknown FourCC).

Frames carry their own index as 12 black/white stripes (the highest bit on the left), so a test can tell
exactly which source frame a sampler returned, whatever the codec did to the pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

INDEX_BITS = 12
PIXEL_FORMATS = {"mjpeg": "yuvj420p", "gif": "rgb8"}
SIZE = (96, 48)  # width, height: 12 stripes of 8 pixels


def index_image(index: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """RGB image whose 12 vertical stripes spell `index` in binary (white = 1), highest bit first."""
    width, height = size
    image = np.zeros((height, width, 3), np.uint8)
    stripe = width // INDEX_BITS
    for bit in range(INDEX_BITS):
        if index >> (INDEX_BITS - 1 - bit) & 1:
            image[:, bit * stripe : (bit + 1) * stripe] = 255
    return image


def read_index(image: np.ndarray) -> int:
    """The index `index_image` drew (read at the stripes' centres)."""
    height, width = image.shape[:2]
    stripe = width // INDEX_BITS
    value = 0
    for bit in range(INDEX_BITS):
        level = image[height // 2, bit * stripe + stripe // 2].astype(int).mean()
        value = value << 1 | int(level > 127)
    return value


def write_indexed_video(
    path: Path,
    times: Sequence[Fraction | float],
    time_base: Fraction = Fraction(1, 1000),
    codec: str = "libx264",
    rate: Fraction | int = 25,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """A video whose frame i (shown from times[i] seconds) draws its index i.

    `faststart` puts an .mp4's index in front (as web videos have it), so a cut copy opens."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = SIZE
        stream.pix_fmt = PIXEL_FORMATS.get(codec, "yuv420p")
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "qp": "0"}
        if rotation:
            stream.set_display_rotation(rotation)
        for index, time in enumerate(times):
            frame = av.VideoFrame.from_ndarray(index_image(index), format="rgb24")
            frame.pts = round(Fraction(time) / time_base)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def chirp(seconds: float, rate: int) -> np.ndarray:
    """A rising tone (200 Hz to 4 kHz) at 0.5: no two instants look alike, so a shift shows."""
    t = np.arange(int(round(seconds * rate))) / rate
    f0, f1 = 200.0, 4000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.5 * np.sin(phase)).astype(np.float32)


def _audio_frames(stream, waveform: np.ndarray, rate: int):
    size = stream.codec_context.frame_size or 1152
    fmt = stream.format.name
    for start in range(0, waveform.size, size):
        chunk = waveform[start : start + size]
        chunk = np.pad(chunk, (0, size - chunk.size))
        stereo = np.stack([chunk, chunk])
        if fmt == "s16p":
            data = (stereo * 32767).astype(np.int16)
        elif fmt == "s16":
            data = (stereo.T.reshape(1, -1) * 32767).astype(np.int16)
        elif fmt == "flt":
            data = stereo.T.reshape(1, -1)
        else:
            data = stereo
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout="stereo")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        yield frame


def _packet_like(packet: av.Packet, data: bytes) -> av.Packet:
    copy = av.Packet(data)
    copy.pts, copy.dts, copy.duration = packet.pts, packet.dts, packet.duration
    copy.time_base = packet.time_base
    copy.stream = packet.stream
    copy.is_keyframe = packet.is_keyframe
    return copy


def garbage_packet(packets: list[av.Packet], index: int, seed: int = 1) -> None:
    """Replace packet `index`'s bytes with random bytes of the same length."""
    size = len(bytes(packets[index]))
    noise = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    packets[index] = _packet_like(packets[index], noise)


def cut_packet(packets: list[av.Packet], index: int, keep: float = 1 / 3) -> None:
    """Cut packet `index` to its first `keep` share (a short packet)."""
    data = bytes(packets[index])
    packets[index] = _packet_like(packets[index], data[: max(1, int(len(data) * keep))])


def span_of(packet: av.Packet) -> tuple[float, float]:
    start = float(packet.pts * packet.time_base)
    return start, start + float(packet.duration * packet.time_base)


def write_av_file(
    path: Path,
    seconds: float = 3.0,
    audio_codec: str = "ac3",
    video_codec: str = "mpeg4",
    fps: int = 10,
    rate: int = 48000,
    damage_audio: Callable[[list[av.Packet]], None] | None = None,
    damage_video: Callable[[list[av.Packet]], None] | None = None,
) -> tuple[Path, list[av.Packet], list[av.Packet]]:
    """A video (frame i draws i) with a chirp on stereo audio; the damage functions edit the
    encoded packet lists before muxing. Returns the path and the (damaged) packet lists."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height = SIZE
        video.pix_fmt = "yuv420p"
        audio = container.add_stream(audio_codec, rate=rate)
        audio.layout = "stereo"
        video_packets: list[av.Packet] = []
        for index in range(int(round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(index_image(index), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            video_packets += video.encode(frame)
        video_packets += video.encode(None)
        audio_packets: list[av.Packet] = []
        for frame in _audio_frames(audio, chirp(seconds, rate), rate):
            audio_packets += audio.encode(frame)
        audio_packets += audio.encode(None)
        if damage_audio is not None:
            damage_audio(audio_packets)
        if damage_video is not None:
            damage_video(video_packets)
        ordered = sorted(video_packets + audio_packets, key=lambda p: float(p.dts * p.time_base))
        for packet in ordered:
            container.mux(packet)
    return path, video_packets, audio_packets


def write_audio_only(path: Path, seconds: float = 1.0, codec: str = "libopus", rate: int = 48000) -> Path:
    """A valid audio-only file (e.g. .ogg with Opus)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "stereo"
        for frame in _audio_frames(stream, chirp(seconds, rate), rate):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_unknown_codec(path: Path) -> Path:
    """An AVI whose video FourCC no FFmpeg knows (an MJPEG file with its tag renamed)."""
    write_indexed_video(path, [Fraction(i, 10) for i in range(5)], codec="mjpeg", rate=10)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"MJPG", b"QQZZ"))
    return path


def cut_file(source: Path, target: Path, share: float) -> Path:
    """The first `share` of a file's bytes (a download or copy that stopped)."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * share)])
    return target
