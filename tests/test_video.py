"""Frame sampling from generated videos: counts, timestamps, colours, rotation, bad files."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from yt8m.core import Yt8mError
from yt8m.extractor import video
from yt8m.extractor.synthetic import PALETTE, write_test_video

COLOR_TOLERANCE = 24  # H.264 at small sizes shifts flat colours by a few levels


def _color_index(image: np.ndarray) -> int:
    """Which palette colour the frame's centre shows (asserting it is close to one)."""
    center = image[image.shape[0] // 2, image.shape[1] // 2].astype(int)
    distances = [np.abs(center - np.array(color)).max() for color in PALETTE]
    best = int(np.argmin(distances))
    assert distances[best] <= COLOR_TOLERANCE, f"centre colour {center} matches no palette colour"
    return best


@pytest.fixture(scope="module")
def five_seconds(tmp_path_factory):
    """5 s at 10 fps: second k is PALETTE[k]."""
    return write_test_video(tmp_path_factory.mktemp("v") / "five.mp4", 5.0, fps=10, audio=None)


def test_mediapipe_takes_one_frame_per_second_from_t0(five_seconds):
    frames = list(video.iter_frames(five_seconds))
    assert len(frames) == 5
    assert [round(f.timestamp, 3) for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [_color_index(f.image) for f in frames] == [0, 1, 2, 3, 4]
    first = frames[0].image
    assert first.dtype == np.uint8 and first.shape == (48, 64, 3)
    # RGB order, not OpenCV's BGR: the first colour is red.
    red, green, blue = first[24, 32].astype(int)
    assert red > 180 and green < 80 and blue < 80


def test_max_frames_caps_and_zero_means_all(five_seconds):
    assert len(list(video.iter_frames(five_seconds, max_frames=3))) == 3
    assert len(list(video.iter_frames(five_seconds, max_frames=0))) == 5
    assert len(list(video.iter_frames(five_seconds, fps=2.0, max_frames=0))) == 10


def test_higher_fps_samples_half_seconds(five_seconds):
    frames = list(video.iter_frames(five_seconds, fps=2.0))
    assert [round(f.timestamp, 3) for f in frames[:4]] == [0.0, 0.5, 1.0, 1.5]
    assert [_color_index(f.image) for f in frames] == [k // 2 for k in range(10)]


def test_legacy_rule_takes_the_frame_after_each_second(five_seconds):
    frames = list(video.iter_frames(five_seconds, sampling=video.SAMPLING_LEGACY))
    # 10 fps: the frame at t = 1.0 ends the skip loop and is dropped, the next (1.1) is taken.
    assert [round(f.timestamp, 3) for f in frames] == [0.0, 1.1, 2.1, 3.1, 4.1]
    assert [_color_index(f.image) for f in frames] == [0, 1, 2, 3, 4]


def test_legacy_rule_differs_from_mediapipe_on_a_1fps_source(tmp_path):
    # One frame per second: the old loop drops the frame at 1 s (it ends the skip loop) and
    # takes every frame after it, so second 1 is missing; MediaPipe's rule takes every second.
    path = write_test_video(tmp_path / "one_fps.mp4", 5.0, fps=1, audio=None)
    mediapipe = [_color_index(f.image) for f in video.iter_frames(path)]
    legacy = [_color_index(f.image) for f in video.iter_frames(path, sampling="legacy")]
    assert mediapipe == [0, 1, 2, 3, 4]
    assert legacy == [0, 2, 3, 4]


def test_select_frames_rules_on_timestamps():
    ten_fps = [i / 10 for i in range(35)]
    assert video.select_frames(ten_fps, sampling="mediapipe") == [0, 10, 20, 30]
    assert video.select_frames(ten_fps, sampling="first-after") == [0, 10, 20, 30]
    assert video.select_frames(ten_fps, sampling="legacy") == [0, 11, 21, 31]
    assert video.select_frames(ten_fps, max_frames=2) == [0, 10]
    # A source slower than the rate: MediaPipe repeats the PREVIOUS frame for a target whose own
    # period has no frame; yt8m's earlier rule (first-after) repeats the next one.
    assert video.select_frames([0.0, 2.0, 4.0], sampling="mediapipe") == [0, 0, 1, 1, 2]
    assert video.select_frames([0.0, 2.0, 4.0], sampling="first-after") == [0, 1, 1, 2, 2]
    # NTSC timestamps (29.97 fps), first-after: the first frame at or after each second.
    ntsc = [i * 1001 / 30000 for i in range(100)]
    chosen = video.select_frames(ntsc, sampling="first-after")
    assert chosen == [0, 30, 60, 90]
    for k, index in enumerate(chosen):
        assert ntsc[index] >= k and (index == 0 or ntsc[index - 1] < k)


def _half_away(value: Fraction) -> int:
    """Round half away from zero (MediaPipe's SafeRound), on exact fractions."""
    return math.floor(value + Fraction(1, 2)) if value >= 0 else -math.floor(-value + Fraction(1, 2))


def expected_mediapipe(times: list[Fraction], fps: Fraction, end: Fraction) -> list[int]:
    """What PacketResamplerCalculator (no jitter, base_timestamp 0, flush_last_packet) emits,
    stated per target rather than as its state machine, on exact times: target k at
    first + k / fps (`first`: the first frame's time rounded to a target of the base). With `a`
    the first frame at or after the target and `b` the one before it: when `a` falls in the
    target's own period (its time rounds to k), the nearer of a and b, a tie going to a; when
    `a` is further away, b (the previous frame, not the nearest); after the last frame, b once
    more only if it rounds to k and the target is before the end of the video."""
    first = Fraction(_half_away(times[0] * fps)) / fps
    chosen: list[int] = []
    k = 0
    while True:
        target = first + k / fps
        after = next((i for i, t in enumerate(times) if t >= target), None)
        if after is None:
            before = len(times) - 1
            if _half_away((times[before] - first) * fps) == k and target < end:
                chosen.append(before)
            return chosen
        before = after - 1
        if _half_away((times[after] - first) * fps) != k:
            chosen.append(before)
        elif before < 0 or times[after] - target <= target - times[before]:
            chosen.append(after)
        else:
            chosen.append(before)
        k += 1


@pytest.mark.parametrize(
    "times, end, fps, expected",
    [
        # the nearest frame: 0.9 is nearer to 1 s than 1.2 (first-after would take 1.2)
        (["0", "0.9", "1.2"], "1.5", 1, [0, 1]),
        # a tie (1.4 and 0.6 both 0.4 s from 1 s) goes to the later frame
        (["0", "0.6", "1.4"], "1.8", 1, [0, 2]),
        # the target's period (0.5 .. 1.5 s) has no frame: the previous one, although 1.6 is nearer
        (["0", "1.6", "2"], "2.4", 1, [0, 0, 2]),
        # the first frame sets the grid: 0.3 s rounds to target 0, so t = 0.3 is never used
        (["0.3", "1.1", "2.2"], "3", 1, [0, 1, 2]),
        # at the end: the last frame again for its own period if that is before the end
        (["0", "1", "1.6"], "1.8", 1, [0, 1]),
        (["0", "1", "1.6"], "2.1", 1, [0, 1, 2]),
        # 2 fps targets: 0.4 and 0.6 are equally near 0.5 s, the later one is taken
        (["0", "0.2", "0.4", "0.6", "0.8", "1.0"], "1.2", 2, [0, 3, 5]),
    ],
)
def test_mediapipe_rule_cases(times, end, fps, expected):
    exact = [Fraction(t) for t in times]
    assert expected_mediapipe(exact, Fraction(fps), Fraction(end)) == expected
    assert video.select_frames([float(t) for t in exact], fps=fps, end=float(end)) == expected


VFR_MS = (0, 100, 200, 2700, 2800, 5300, 5400, 5500, 7000)  # frame times (ms) of a VFR source with gaps


def _ntsc(count: int) -> list[Fraction]:
    return [Fraction(i * 1001, 30000) for i in range(count)]


@pytest.mark.parametrize(
    "name, times, end",
    [
        ("29.97 fps, 60 s", _ntsc(1800), Fraction(1800 * 1001, 30000)),
        ("25 fps, 10 s", [Fraction(i, 25) for i in range(250)], Fraction(10)),
        ("VFR with gaps", [Fraction(ms, 1000) for ms in VFR_MS], Fraction(71, 10)),
        ("0.5 fps, 10 s", [Fraction(2 * i) for i in range(5)], Fraction(10)),
        ("29.97 fps from 0.4 s", [t + Fraction(2, 5) for t in _ntsc(200)], Fraction(2, 5) + _ntsc(201)[-1]),
    ],
)
def test_mediapipe_rule_matches_the_calculator_on_timestamps(name, times, end):
    expected = expected_mediapipe(times, Fraction(1), end)
    assert video.select_frames([float(t) for t in times], end=float(end)) == expected, name


def test_mediapipe_rule_at_2997_takes_the_nearest_and_flushes_the_last():
    times = _ntsc(1800)  # 60.06 s
    chosen = video.select_frames([float(t) for t in times])
    assert len(chosen) == 61  # t = 0 .. 60
    for k, index in enumerate(chosen):
        neighbours = [i for i in (index - 1, index + 1) if 0 <= i < len(times)]
        assert all(abs(times[index] - k) <= abs(times[i] - k) for i in neighbours)
    # after ~17 s the frame just before each second is the nearer one: first-after differs there
    first_after = video.select_frames([float(t) for t in times], sampling="first-after")
    assert chosen[:17] == first_after[:17] and chosen[30] == first_after[30] - 1 == 899
    # 20.02 s: the last frame (19.99 s) is in the period of 20 s, which is before the end: flushed
    twenty = video.select_frames([float(t) for t in _ntsc(600)])
    assert len(twenty) == 21 and twenty[-1] == 599


def test_duration_longer_than_cap_and_short_clip(tmp_path):
    long_path = write_test_video(tmp_path / "long.mp4", 12.0, fps=5, audio=None)
    assert len(list(video.iter_frames(long_path, max_frames=10))) == 10
    assert len(list(video.iter_frames(long_path, max_frames=300))) == 12
    clip = write_test_video(tmp_path / "clip.mp4", 0.4, fps=10, audio=None)
    frames = list(video.iter_frames(clip))
    assert len(frames) == 1 and frames[0].timestamp == 0.0 and _color_index(frames[0].image) == 0


def test_rotation_metadata_is_applied(tmp_path):
    # A square at the left edge, vertically centred (motion "right" at phase 0) on a 64x48 frame.
    plain = write_test_video(tmp_path / "plain.mp4", 1.0, fps=2, colors=[PALETTE[2]], motion="right", audio=None)
    rotated = write_test_video(
        tmp_path / "rotated.mp4", 1.0, fps=2, colors=[PALETTE[2]], motion="right", audio=None, rotation=90
    )
    upright = next(video.iter_frames(plain)).image
    turned = next(video.iter_frames(rotated)).image
    assert upright.shape == (48, 64, 3)
    assert turned.shape == (64, 48, 3)
    is_square = lambda px: int(px.astype(int).sum()) > 600  # white square on blue
    assert is_square(upright[24, 2]) and not is_square(upright[24, 61])
    # 90 degrees counter-clockwise: the left edge becomes the bottom edge.
    assert is_square(turned[61, 24]) and not is_square(turned[2, 24])
    assert video.probe_video(rotated).rotation in (90, 270)
    assert (video.probe_video(rotated).width, video.probe_video(rotated).height) == (48, 64)


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("garbage", "not a readable video"),
        ("empty", "empty file"),
        ("text", "not a readable video"),
        ("truncated", "not a readable video"),
        ("truncated_faststart", "truncated"),
        ("missing", "no such file"),
        ("folder", "is a folder"),
    ],
)
def test_bad_files_raise_one_line_naming_the_file(tmp_path, kind, reason):
    path = tmp_path / f"{kind}.mp4"
    if kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 40)
    elif kind.startswith("truncated"):
        source = write_test_video(tmp_path / "source.mp4", 10.0, fps=10, faststart=kind.endswith("faststart"))
        data = source.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(Yt8mError) as caught:
        list(video.iter_frames(path))
    message = str(caught.value)
    assert str(path) in message and reason in message and "\n" not in message


class _NoTimestampCapture:
    """A capture whose container has no timestamps (POS_MSEC always 0)."""

    def get(self, prop):
        return 0.0


def test_missing_timestamps_fall_back_to_index_over_fps():
    clock = video._Clock(nominal_fps=4.0)
    capture = _NoTimestampCapture()
    times = [clock.time_of(capture) for _ in range(6)]
    assert times == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25])
    no_rate = video._Clock(nominal_fps=None)
    expected = [0.0, 1 / video.FALLBACK_FPS, 2 / video.FALLBACK_FPS]
    assert [no_rate.time_of(capture) for _ in range(3)] == pytest.approx(expected)


def test_options_are_validated(five_seconds):
    with pytest.raises(Yt8mError, match="sampling"):
        list(video.iter_frames(five_seconds, sampling="nearest"))
    with pytest.raises(Yt8mError, match="per second"):
        list(video.iter_frames(five_seconds, fps=0))
    assert video.is_video_file("a/b/C.MKV") and not video.is_video_file("notes.txt")
