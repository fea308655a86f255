"""The classification result types and the HTML report: self-contained, escaped, renders in Chromium."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from yt8m.app.report import render_report, write_report
from yt8m.classifier.results import ClassificationResult, LabelScore, SegmentPrediction
from yt8m.core import Yt8mError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_TIMEOUT_S = 120
WINDOW = (1200, 1600)  # width, height of the screenshot
HOSTILE_NAME = '<script>alert("pwned")</script> & "Tom\'s" <b>bold</b>'
SETTINGS_URL = "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"
RANDOM_WARNING = "features from RANDOM weights: not YT8M features"
BAR_RGB = (0x3B, 0x82, 0xC4)  # --bar in the light colour scheme
WARNING_RGB = (0xFF, 0xF4, 0xD6)  # --warn-bg in the light colour scheme
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
             "wbr"}
SECOND_COLOURS = [(230, 25, 25), (25, 200, 60), (30, 60, 230), (240, 220, 30), (200, 40, 200), (40, 220, 220)]


def _thumbnail(second: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A frame with a per-second background colour and a white square that moves right."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = SECOND_COLOURS[second % len(SECOND_COLOURS)]
    x = (second * 7) % (width - 12)
    image[18:30, x : x + 12] = 255
    return image


def _results() -> list[ClassificationResult]:
    """Two videos: 12 s with warnings, thumbnails and 3 segments; 7 s with neither warnings nor segments."""
    names = [HOSTILE_NAME, "Vehicle", "Car", "Racing", "Motorsport"]
    scores = [np.float32(0.91), 0.62, 0.45, 0.125, 0.03]
    labels = [LabelScore(index=i * 3, name=n, score=s) for i, (n, s) in enumerate(zip(names, scores))]
    windows = [(0.0, 5.0), (5.0, 10.0), (10.0, 12.0)]
    tops = [[0, 1, 2], [1, 2, 0], [2, 3, 4]]
    segments = [
        SegmentPrediction(
            start, end,
            [LabelScore(labels[j].index, labels[j].name, labels[j].score * (0.9 - 0.1 * k))
             for k, j in enumerate(top)],
        )
        for (start, end), top in zip(windows, tops)
    ]
    first = ClassificationResult(
        source="/videos/clip <1>.mp4",
        video_id="clip-1",
        duration_seconds=12.0,
        num_frames=np.int64(12),
        labels=labels,
        segments=segments,
        thumbnails=[_thumbnail(second) for second in range(12)],
        settings={"model": "NeXtVLAD", "weights": SETTINGS_URL, "precision": "float32",
                  "feature spec": "rgb:1024,audio:128"},
        warnings=[RANDOM_WARNING, "audio track missing: <silence> used"],
    )
    second = ClassificationResult(
        source="/videos/other.mkv",
        video_id="other",
        duration_seconds=7.0,
        num_frames=7,
        labels=labels[1:3],
        thumbnails=[_thumbnail(second, 96, 128) for second in range(7)],
        settings={"model": "logistic"},
    )
    return [first, second]


class _Page(HTMLParser):
    """Collects, per `<section class="video">`, the elements by class, attributes and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.videos: list[dict[str, list[dict[str, str]]]] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        self.tags.append((tag, attributes))
        classes = attributes.get("class", "").split()
        opens_video = tag == "section" and "video" in classes
        if opens_video:
            self.videos.append({})
        if self.videos and any(is_video for _, is_video in self.stack) or opens_video:
            for name in classes:
                self.videos[-1].setdefault(name, []).append(attributes)
        self._in_style = tag == "style"
        if tag not in VOID_TAGS:
            self.stack.append((tag, opens_video))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        while self.stack:
            open_tag, _ = self.stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        (self.styles if self._in_style else self.text).append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def _check_structure(page: _Page, results: list[ClassificationResult]) -> None:
    """The elements the report promises, per video, with bar widths proportional to the scores."""
    assert len(page.videos) == len(results)
    for video, result in zip(page.videos, results):
        assert len(video.get("thumb", [])) == len(result.thumbnails)
        bars = video.get("label-bar", [])
        assert len(bars) == len(result.labels)
        widths = [float(re.search(r"width:\s*([\d.]+)%", f["style"]).group(1)) for f in video["fill"]]
        assert widths == pytest.approx([100 * float(label.score) for label in result.labels], abs=1e-3)
        segments = video.get("segment", [])
        assert len(segments) == len(result.segments)
        for block, segment in zip(segments, result.segments):
            for label in segment.labels[:3]:
                assert label.name in block["title"]
        assert len(video.get("warning", [])) == (1 if result.warnings else 0)


def test_to_dict_is_json_safe_and_leaves_out_thumbnails():
    result = _results()[0]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["num_frames"] == 12 and isinstance(data["num_frames"], int)
    assert data["labels"][0] == {"index": 0, "name": HOSTILE_NAME, "score": pytest.approx(0.91, abs=1e-6)}
    assert [s["start_seconds"] for s in data["segments"]] == [0.0, 5.0, 10.0]
    assert data["segments"][2]["labels"][0]["name"] == "Car"
    assert data["num_thumbnails"] == 12 and "thumbnails" not in data
    assert data["settings"]["weights"] == SETTINGS_URL
    assert data["warnings"][0] == RANDOM_WARNING


def test_report_is_self_contained_escaped_and_complete(tmp_path):
    results = _results()
    path = write_report(results, tmp_path / "out" / "report.html")
    assert path == tmp_path / "out" / "report.html"
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary left over
    html_text = path.read_text(encoding="utf-8")
    page = _parse(html_text)

    # Nothing is loaded from anywhere: every src/href is a data URI or an in-page anchor, the CSS
    # imports nothing, and there is no script at all.
    for tag, attributes in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed", "base")
        for key in ("src", "href", "srcset", "action", "poster", "data"):
            if key in attributes:
                assert attributes[key].startswith(("data:image/", "#")), (tag, key, attributes[key][:60])
        assert "url(" not in attributes.get("style", "")
    css = "".join(page.styles)
    assert "url(" not in css and "@import" not in css
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html_text, re.IGNORECASE)

    # Names are shown as text, never as markup.
    assert "<script>" not in html_text and "<b>bold" not in html_text
    assert html_text.count("&lt;script&gt;alert(") >= 1 + 2  # bar + segment block/legend
    text = "".join(page.text)
    assert HOSTILE_NAME in text and SETTINGS_URL in text and "clip <1>.mp4" in text
    assert RANDOM_WARNING in text

    _check_structure(page, results)
    captions = [attrs for attrs in page.tags if attrs[0] == "figcaption"]
    assert len(captions) == 12 + 7


def test_thumbnails_keep_their_colours_and_are_shrunk():
    """RGB in, JPEG out: decoding the data URI gives back the colours (no red/blue swap), <= 72 px tall."""
    results = _results()
    page = _parse(render_report(results))
    for video, result in zip(page.videos, results):
        for image_attrs, thumbnail in zip(video["thumb"], result.thumbnails):
            payload = image_attrs["src"].split(",", 1)[1]
            decoded = cv2.imdecode(np.frombuffer(base64.b64decode(payload), np.uint8), cv2.IMREAD_COLOR)
            assert decoded is not None
            rgb = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
            assert rgb.shape[0] == min(thumbnail.shape[0], 72)
            assert rgb.shape[1] == round(thumbnail.shape[1] * rgb.shape[0] / thumbnail.shape[0])
            corner = rgb[:4, :4].reshape(-1, 3).mean(axis=0)
            assert np.abs(corner - thumbnail[0, 0]).max() < 20


def test_segment_colours_follow_the_label():
    """The same top label gets the same fill in every block; different labels different fills."""
    result = _results()[0]
    result.segments.append(SegmentPrediction(12.0, 13.0, [result.segments[0].labels[0]]))
    page = _parse(render_report([result]))
    blocks = page.videos[0]["segment"]
    fills = [re.search(r"background:\s*(#[0-9a-f]{6})", block["style"]).group(1) for block in blocks]
    assert fills[0] == fills[3]
    assert len({fills[0], fills[1], fills[2]}) == 3


def test_write_report_names_the_file_it_cannot_write(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(Yt8mError, match="not-a-dir"):
        write_report(_results(), blocker / "report.html")


def test_bad_thumbnail_is_refused():
    result = _results()[1]
    result.thumbnails = [np.zeros((8, 8, 3), np.float32)]
    with pytest.raises(ValueError, match="uint8"):
        render_report([result])


def _chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with a private profile, no network services, console messages on stderr."""
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr", "--v=0", *extra, url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, cwd=tmp_path)


def _console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _pixels_near(image_bgr: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 8) -> int:
    target = np.array(rgb[::-1], np.int16)
    return int((np.abs(image_bgr.astype(np.int16) - target).max(axis=2) <= tolerance).sum())


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
)


@needs_chromium
def test_report_renders_in_chromium_without_console_errors(tmp_path):
    results = _results()
    path = write_report(results, tmp_path / "report.html")

    dumped = _chromium(tmp_path, path.as_uri(), "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert _console_messages(dumped.stderr) == []
    page = _parse(dumped.stdout)
    _check_structure(page, results)
    assert HOSTILE_NAME in "".join(page.text)

    screenshot = tmp_path / "shot.png"
    shot = _chromium(tmp_path, path.as_uri(), f"--screenshot={screenshot}",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert _console_messages(shot.stderr) == []
    image = cv2.imread(str(screenshot), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (WINDOW[1], WINDOW[0])
    assert float(image.std()) > 10.0
    # The stylesheet applied: the score bars and the warning banner are painted in their colours.
    assert _pixels_near(image, BAR_RGB) > 2000
    assert _pixels_near(image, WARNING_RGB) > 5000


@needs_chromium
def test_chromium_check_catches_an_external_reference(tmp_path):
    """The console check is not blind: a smuggled external image is blocked by the CSP and logged."""
    page = render_report(_results()[1:]).replace(
        "</main>", '<img src="https://example.invalid/tracker.png" alt=""></main>'
    )
    path = tmp_path / "tampered.html"
    path.write_text(page, encoding="utf-8")
    dumped = _chromium(tmp_path, path.as_uri(), "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    messages = _console_messages(dumped.stderr)
    assert any("Content Security Policy" in line for line in messages), dumped.stderr[-2000:]
