"""Real-world decoding problems, each generated as a real file: probing, the two decoders giving
the same frames, AV1, damaged audio and video packets, truncated files, GIF, and MediaPipe's
frame choice on encoded 29.97 / 25 / VFR / 0.5 fps sources."""

from __future__ import annotations

import re
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from media_cases import (
    SIZE,
    cut_file,
    cut_packet,
    garbage_packet,
    read_index,
    span_of,
    write_av_file,
    write_indexed_video,
)
from test_video import VFR_MS, expected_mediapipe

from yt8m.core import Yt8mError
from yt8m.extractor import audio, video

# Both decoders run FFmpeg and convert with swscale's BGR24 bicubic path: bit-identical here
# (tested on H.264, MPEG-4, MJPEG, VP9, AV1, 10-bit, odd sizes). One level is allowed for
# rounding differences of SIMD code between the two bundled FFmpeg builds on other machines.
PIXEL_TOLERANCE = 1
AV1_ENCODERS = ("libsvtav1", "libaom-av1", "librav1e")


def _frames(path, **options):
    return list(video.iter_frames(path, **options))


def _indices(frames) -> list[int]:
    return [read_index(frame.image) for frame in frames]


# --------------------------------------------------------------------------- probe


def test_probe_reports_what_a_file_holds(tmp_path):
    path, _, _ = write_av_file(tmp_path / "clip.avi", seconds=2.0)
    started = time.perf_counter()
    found = video.probe(path)
    elapsed = time.perf_counter() - started
    assert found.ok and found.reason is None and found.message == ""
    assert (found.has_video, found.has_audio) == (True, True)
    assert (found.video_codec, found.audio_codec) == ("mpeg4", "ac3")
    assert (found.width, found.height, found.fps, found.rotation) == (*SIZE, 10.0, 0)
    assert found.duration == pytest.approx(2.0, abs=0.1)
    assert elapsed < 0.5  # headers and one frame: milliseconds, with room for a busy CI machine
    rotated = video.probe(write_indexed_video(tmp_path / "rot.mp4", [0, 0.1], rotation=90))
    assert rotated.ok and rotated.rotation in (90, 270) and (rotated.width, rotated.height) == SIZE[::-1]


@pytest.mark.parametrize(
    "case, reason",
    [
        ("audio_only", "has no video stream (audio only)"),
        ("unknown_codec", "video codec is not supported"),
        ("empty", "empty file"),
        ("text", "not a readable video"),
        ("missing", "no such file"),
        ("folder", "is a folder"),
    ],
)
def test_probe_gives_one_reason_per_bad_file(tmp_path, bad_media, case, reason):
    path = bad_media.get(case, tmp_path / f"{case}.mp4")
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not a video\n" * 50)
    elif case == "folder":
        path.mkdir()
    found = video.probe(path)
    assert not found.ok and reason in found.reason
    assert found.message == f"{path}: {found.reason}" and "\n" not in found.message
    with pytest.raises(Yt8mError, match=reason.split(" (")[0]):
        found.check()
    # extraction says the same
    with pytest.raises(Yt8mError) as caught:
        _frames(path)
    assert str(path) in str(caught.value) and reason.split(" (")[0] in str(caught.value)
    if case == "audio_only":
        assert found.has_audio and found.audio_codec == "opus" and not found.has_video


# --------------------------------------------------------------------------- decoders


@pytest.mark.parametrize("name, codec", [("h264.mp4", "libx264"), ("mpeg4.mp4", "mpeg4"), ("mjpeg.avi", "mjpeg")])
@pytest.mark.parametrize("sampling", video.SAMPLING_RULES)
def test_pyav_and_opencv_decoders_give_the_same_frames(tmp_path, name, codec, sampling):
    times = [Fraction(i, 10) for i in range(45)]
    path = write_indexed_video(tmp_path / name, times, codec=codec, rate=10)
    pyav = _frames(path, fps=2.0, sampling=sampling, decoder="pyav")
    opencv = _frames(path, fps=2.0, sampling=sampling, decoder="opencv")
    assert len(pyav) == len(opencv) > 0
    assert [f.timestamp for f in pyav] == [f.timestamp for f in opencv]
    assert _indices(pyav) == _indices(opencv)
    for a, b in zip(pyav, opencv):
        assert a.image.shape == b.image.shape and a.image.dtype == b.image.dtype == np.uint8
        assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= PIXEL_TOLERANCE


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_decoders_turn_rotated_videos_alike(tmp_path, rotation):
    path = write_indexed_video(tmp_path / f"r{rotation}.mp4", [0, Fraction(1, 2)], rotation=rotation, rate=2)
    pyav = _frames(path, decoder="pyav")[0].image
    opencv = _frames(path, decoder="opencv")[0].image
    width, height = SIZE
    assert pyav.shape == opencv.shape == ((width, height, 3) if rotation in (90, 270) else (height, width, 3))
    assert np.abs(pyav.astype(int) - opencv.astype(int)).max() <= PIXEL_TOLERANCE


def test_decoder_option_is_validated(tmp_path):
    path = write_indexed_video(tmp_path / "a.mp4", [0])
    with pytest.raises(Yt8mError, match="decoder"):
        _frames(path, decoder="gstreamer")


def test_av1_is_decoded(tmp_path):
    encoder = next((name for name in AV1_ENCODERS if name in av.codecs_available), None)
    if encoder is None:
        pytest.skip("PyAV's FFmpeg has no AV1 encoder")
    times = [Fraction(i, 10) for i in range(25)]
    path = write_indexed_video(tmp_path / "av1.mkv", times, codec=encoder, rate=10)
    assert video.probe(path).video_codec == "av1"
    frames = _frames(path)  # auto: PyAV, whatever OpenCV's build can do
    assert _indices(frames) == [0, 10, 20]


def test_auto_falls_back_to_opencv_when_pyav_cannot(tmp_path, monkeypatch):
    path = write_indexed_video(tmp_path / "a.mp4", [Fraction(i, 10) for i in range(25)], rate=10)

    def refuse(*args, **kwargs):
        raise Yt8mError(f"{path}: video codec is not supported")

    monkeypatch.setattr(video, "_PyAvSource", refuse)
    assert _indices(_frames(path)) == [0, 10, 20]
    with pytest.raises(Yt8mError, match="not supported"):
        _frames(path, decoder="pyav")


def test_unknown_codec_is_named_by_both_decoders(bad_media):
    for decoder in ("auto", "pyav"):
        with pytest.raises(Yt8mError, match="video codec is not supported"):
            _frames(bad_media["unknown_codec"], decoder=decoder)


# --------------------------------------------------------------------------- damaged packets


def test_damaged_video_packet_is_skipped_and_reported(tmp_path):
    hit = {}

    def damage(packets):
        index = next(i for i in range(len(packets) // 2, len(packets)) if not packets[i].is_keyframe)
        hit["span"] = span_of(packets[index])
        garbage_packet(packets, index)

    path, _, _ = write_av_file(tmp_path / "v.avi", seconds=4.0, damage_video=damage)
    messages: list[str] = []
    frames = _frames(path, decoder="pyav", on_warning=messages.append)
    assert len(frames) == 4  # the video goes on past the damage
    assert len(messages) == 1 and str(path) in messages[0] and "damaged video packet" in messages[0]
    low, high = (float(x) for x in re.search(r"at ([0-9.]+)-([0-9.]+) s", messages[0]).groups())
    assert low <= hit["span"][0] < high


def _clean_and_damaged(tmp_path, audio_codec, container, damage):
    clean, _, _ = write_av_file(tmp_path / f"clean.{container}", audio_codec=audio_codec)
    hit = {}

    def damage_and_remember(packets):
        index = damage(packets)
        hit["span"] = span_of(packets[index])

    damaged, _, _ = write_av_file(
        tmp_path / f"damaged.{container}", audio_codec=audio_codec, damage_audio=damage_and_remember
    )
    return clean, damaged, hit["span"]


def _garbage_middle(packets):
    index = len(packets) // 2
    garbage_packet(packets, index)
    return index


def _short_last(packets):
    index = len(packets) - 1
    cut_packet(packets, index)
    return index


@pytest.mark.parametrize(
    "audio_codec, container, damage",
    [
        ("ac3", "avi", _garbage_middle),
        ("mp2", "avi", _garbage_middle),
        ("aac", "mkv", _garbage_middle),
        ("aac", "mkv", _short_last),
    ],
)
def test_one_damaged_audio_packet_keeps_the_rest_aligned(tmp_path, audio_codec, container, damage):
    clean_path, damaged_path, (start, end) = _clean_and_damaged(tmp_path, audio_codec, container, damage)
    messages: list[str] = []
    clean = audio.read_waveform(clean_path)
    damaged = np.concatenate(list(audio.iter_waveform(damaged_path, on_warning=messages.append)))
    # one warning, naming the file and the seconds affected (as the demuxer times the packet:
    # AVI derives audio times from byte counts, which may differ from the encoder's by a packet)
    assert len(messages) == 1 and str(damaged_path) in messages[0]
    low, high = (float(x) for x in re.search(r"at ([0-9.]+)-([0-9.]+) s", messages[0]).groups())
    assert abs(low - start) <= (end - start) + 0.01 and high > low
    rate = audio.SAMPLE_RATE
    # what the warning names is silence (garbage may also decode as noise without an error:
    # MP2 does, for the packet before the one it rejects; that part cannot be told from sound)
    inside = damaged[int((low + 0.01) * rate) : int((high - 0.005) * rate)]
    assert inside.size == 0 or np.abs(inside).max() < 0.05
    # after it, the audio is where it belongs: same samples as the clean file, not shifted
    # (a chirp: shifting it by one packet would make these differ by ~0.5)
    margin = 0.06  # the next frame's overlap with the lost one, and the resampler's filter
    after_start, after_end = int((end + margin) * rate), int(min(2.9, clean.size / rate - 0.02) * rate)
    if after_end > after_start:
        assert np.abs(damaged[after_start:after_end] - clean[after_start:after_end]).max() < 0.05
    before = int((start - margin) * rate)
    assert np.abs(damaged[:before] - clean[:before]).max() < 0.01
    # the examples the pipeline reads are all there, with the python warning by default
    with pytest.warns(video.DecodeWarning, match="damaged audio"):
        examples = list(audio.iter_audio_examples(damaged_path))
    assert len(examples) == len(list(audio.iter_audio_examples(clean_path)))


def test_no_decodable_audio_at_all_says_how_to_keep_the_video(bad_media):
    path = bad_media["no_audio_decodes"]
    with pytest.raises(Yt8mError) as caught:
        list(audio.iter_waveform(path))
    message = str(caught.value)
    assert str(path) in message and "no audio could be decoded" in message and "'aac'" in message
    assert "--no-audio" in message and "\n" not in message
    assert len(_frames(path)) == 3  # the pictures decode


def test_audio_damage_file_from_the_shared_fixture_decodes(bad_media):
    messages: list[str] = []
    waveform = np.concatenate(list(audio.iter_waveform(bad_media["damaged_audio"], on_warning=messages.append)))
    assert waveform.size == pytest.approx(3.0 * audio.SAMPLE_RATE, rel=0.02)
    assert len(messages) == 1 and "damaged audio packet" in messages[0]


# --------------------------------------------------------------------------- truncated files


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_cut_mkv_is_reported_like_a_cut_mp4(tmp_path, bad_media, decoder):
    with pytest.raises(Yt8mError, match="truncated") as caught:
        _frames(bad_media["truncated_mkv"], decoder=decoder)
    assert str(bad_media["truncated_mkv"]) in str(caught.value) and "of the 10.0 s" in str(caught.value)
    mp4 = write_indexed_video(tmp_path / "full.mp4", [Fraction(i, 10) for i in range(100)], rate=10, faststart=True)
    cut = cut_file(mp4, tmp_path / "cut.mp4", 0.6)
    with pytest.raises(Yt8mError, match="truncated"):
        _frames(cut, decoder=decoder)


def test_whole_mkv_and_longer_audio_are_not_truncated(tmp_path):
    path = write_indexed_video(tmp_path / "whole.mkv", [Fraction(i, 10) for i in range(30)], rate=10)
    assert len(_frames(path)) == 3
    with_audio, _, _ = write_av_file(tmp_path / "av.mkv", seconds=3.0, audio_codec="aac")
    assert len(_frames(with_audio)) == 3


# --------------------------------------------------------------------------- gif and folder scans


def test_gif_is_a_video_file_and_decodes(bad_media):
    assert video.is_video_file(bad_media["gif"]) and ".gif" in video.VIDEO_EXTENSIONS
    found = video.probe(bad_media["gif"])
    assert found.ok and found.video_codec == "gif"
    assert _indices(_frames(bad_media["gif"], fps=5.0)) == [0, 2, 4, 6, 8]
    videos, skipped = video.split_by_extension(["a.gif", "b.MP4", "notes.txt", "c.txt", "README"])
    assert [p.name for p in videos] == ["a.gif", "b.MP4"] and skipped == {".txt": 2, "": 1}


# --------------------------------------------------------------------------- MediaPipe's frame choice


def _encoded_times(path) -> list[Fraction]:
    """The presentation times the file holds, read back exactly (independent of yt8m)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        pts = sorted(packet.pts for packet in container.demux(stream) if packet.pts is not None)
        return [Fraction(p - start) * stream.time_base for p in pts]


@pytest.mark.parametrize(
    "name, times, time_base, rate",
    [
        ("ntsc.mp4", [Fraction(i * 1001, 30000) for i in range(600)], Fraction(1, 30000), Fraction(30000, 1001)),
        ("pal.mp4", [Fraction(i, 25) for i in range(100)], Fraction(1, 12800), 25),
        ("vfr.mkv", [Fraction(ms, 1000) for ms in VFR_MS], Fraction(1, 1000), 10),
        ("slow.mp4", [Fraction(2 * i) for i in range(5)], Fraction(1, 1000), Fraction(1, 2)),
    ],
)
@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_mediapipe_sampling_of_encoded_sources(tmp_path, name, times, time_base, rate, decoder):
    path = write_indexed_video(tmp_path / name, times, time_base=time_base, rate=rate)
    stored = _encoded_times(path)
    assert stored == times  # the container keeps the exact times the test chose
    end = times[-1] + 1 / Fraction(rate)  # the last frame lasts one nominal frame interval
    expected = expected_mediapipe(times, Fraction(1), end)
    frames = _frames(path, decoder=decoder)
    assert _indices(frames) == expected
    assert [f.timestamp for f in frames] == pytest.approx([float(times[i]) for i in expected])
