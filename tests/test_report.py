"""The classification result types and the HTML report: self-contained, escaped, renders in Chromium."""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from yt8m.app.report import (
    CSS_COLOURS,
    STRIP_MAX_THUMBS,
    THUMB_MAX_HEIGHT,
    ClassColours,
    colour_word,
    render_report,
    write_report,
)
from yt8m.classifier.results import ClassificationResult, LabelScore, SegmentPrediction
from yt8m.core import Yt8mError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_TIMEOUT_S = 120
WINDOW = (1200, 1600)  # width, height of the screenshot
HOSTILE_NAME = '<script>alert("pwned")</script> & "Tom\'s" <b>bold</b>'
SETTINGS_URL = "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"
RANDOM_WARNING = "features from RANDOM weights: not YT8M features"
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
        strip = video.get("thumb", [])
        assert 0 < len(strip) <= STRIP_MAX_THUMBS if result.thumbnails else not strip
        # every frame is shown: in the strip, or (long videos) on hover over the timeline
        shown_on_hover = len(video.get("cell", []))
        assert shown_on_hover == (len(result.thumbnails) if len(strip) < len(result.thumbnails) else 0)
        bars = video.get("label-bar", [])
        assert len(bars) == len(result.labels)
        widths = [float(re.search(r"width:\s*([\d.]+)%", f["style"]).group(1)) for f in video["fill"]]
        assert widths == pytest.approx([100 * float(label.score) for label in result.labels], abs=1e-3)
        segments = video.get("segment", [])
        assert len(segments) == len(result.segments)
        for block, segment in zip(segments, result.segments):
            for label in segment.labels[:3]:
                assert label.name in block["title"]
        end_ticks = video.get("end", [])  # a drawn timeline always runs to the end of the video
        assert len(end_ticks) == (1 if result.segments or shown_on_hover else 0)


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
    """RGB in, JPEG out: decoding the data URI gives back the colours (no red/blue swap), shrunk."""
    results = _results()
    page = _parse(render_report(results))
    for video, result in zip(page.videos, results):
        for image_attrs, thumbnail in zip(video["thumb"], result.thumbnails):
            payload = image_attrs["src"].split(",", 1)[1]
            decoded = cv2.imdecode(np.frombuffer(base64.b64decode(payload), np.uint8), cv2.IMREAD_COLOR)
            assert decoded is not None
            rgb = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
            assert rgb.shape[0] == min(thumbnail.shape[0], THUMB_MAX_HEIGHT)
            assert rgb.shape[1] == round(thumbnail.shape[1] * rgb.shape[0] / thumbnail.shape[0])
            corner = rgb[:4, :4].reshape(-1, 3).mean(axis=0)
            assert np.abs(corner - thumbnail[0, 0]).max() < 20


def test_segment_colours_follow_the_label():
    """The same top label gets the same fill in every block; different labels different fills."""
    result = _results()[0]
    result.segments.append(SegmentPrediction(12.0, 13.0, [result.segments[0].labels[0]]))
    page = _parse(render_report([result]))
    blocks = page.videos[0]["segment"]
    fills = [re.search(r"background-color:\s*(#[0-9a-f]{6})", block["style"]).group(1) for block in blocks]
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
    # The stylesheet applied: bars and windows are painted in their classes' colours, the warning
    # banner in its own.
    colours = ClassColours.of_results(results)
    for label in results[0].labels[1:3]:
        fill = colours(label).fill
        assert _pixels_near(image, tuple(int(fill[i : i + 2], 16) for i in (1, 3, 5))) > 1000, label.name
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


# ----------------------------------------------------------------------------- colours, summary, links


def _fill(style: str) -> str:
    return re.search(r"background-color:\s*(#[0-9a-f]{6})", style).group(1)


_CLASS_INDEX: dict[str, int] = {}


def _class_index(name: str) -> int:
    """One class index per name across every result of a test (as in a real label space)."""
    return _CLASS_INDEX.setdefault(name, len(_CLASS_INDEX) + 100)


def _result(source, names, duration=20.0, thumbnails=0, warnings=(), settings=None, **extra):
    """A result whose 5-second windows cycle through `names` (top label) and whose labels are `names`."""
    labels = [LabelScore(_class_index(name), name, 0.9 - 0.1 * i) for i, name in enumerate(names)]
    windows = int(math.ceil(duration / 5))
    segments = [
        SegmentPrediction(5.0 * w, min(duration, 5.0 * w + 5), [labels[w % len(labels)]]) for w in range(windows)
    ]
    result = ClassificationResult(
        source=str(source), video_id=Path(str(source)).stem, duration_seconds=duration,
        num_frames=int(duration), labels=labels, segments=segments,
        thumbnails=[_thumbnail(second) for second in range(thumbnails)],
        settings=dict(settings or {"model": "demo"}), warnings=list(warnings), **extra,
    )
    return result


def test_colour_words_in_class_names():
    assert colour_word("red_right") == "red"
    assert colour_word("blue_down") == "blue"
    assert colour_word("DarkRed car") == "darkred"
    assert colour_word("light sea green boat") == "lightseagreen"
    assert colour_word("Bored") is None and colour_word("Vehicle") is None  # whole words only


def test_segment_colours_never_contradict_class_names_and_hold_across_videos():
    """`red_right` is red wherever it is drawn (bars, windows, legend, both videos); a class
    without a colour word keeps one palette colour, far from the name colours on the page."""
    first = _result("/v/a.mp4", ["red_right", "blue_down", "green_circle", "Car"])
    second = _result("/v/b.mp4", ["Car", "red_right"])
    page = _parse(render_report([first, second]))
    by_name: dict[str, set[str]] = {}
    for video, result in zip(page.videos, [first, second]):
        for block, segment in zip(video["segment"], result.segments):
            by_name.setdefault(segment.labels[0].name, set()).add(_fill(block["style"]))
        for fill, label in zip(video["fill"], result.labels):
            by_name.setdefault(label.name, set()).add(_fill(fill["style"]))
    assert by_name["red_right"] == {CSS_COLOURS["red"]}
    assert by_name["blue_down"] == {CSS_COLOURS["blue"]}
    assert by_name["green_circle"] == {CSS_COLOURS["green"]}
    (car,) = by_name["Car"]
    assert car not in {CSS_COLOURS["red"], CSS_COLOURS["blue"], CSS_COLOURS["green"]}
    # the palette colour is chosen from the name: the same in a report with only this class
    alone = ClassColours({3: "Car"})
    assert alone(LabelScore(3, "Car", 1.0)).fill == car


def test_classes_sharing_a_colour_word_are_told_apart_by_stripes():
    colours = ClassColours({0: "red_left", 1: "red_right"})
    left, right = colours(LabelScore(0, "red_left", 1.0)), colours(LabelScore(1, "red_right", 1.0))
    assert left.fill == right.fill == CSS_COLOURS["red"]
    assert left.striped != right.striped and "gradient" in (left.style() + right.style())


def test_summary_table_and_run_wide_warnings_and_settings_stated_once():
    shared = "features made with RANDOM network weights"
    results = [
        _result("/v/a.mp4", ["Car"], warnings=[shared], settings={"model": "m", "weights": "random", "audio": "ok"}),
        _result("/v/b.mp4", ["Dog"], warnings=[shared, "the video has no audio track"],
                settings={"model": "m", "weights": "random", "audio": "missing"}),
        _result("/v/long.mp4", ["Cat"], duration=300.0, warnings=[shared],
                settings={"model": "m", "weights": "random", "audio": "ok"}, capped=True,
                source_duration_seconds=1200.0),
    ]
    html_text = render_report(results)
    page = _parse(html_text)
    assert html_text.count(shared) == 1  # stated once, at the top
    summary_rows = html_text.split('<table class="summary">', 1)[1].split("</table>", 1)[0].count("<tr>")
    assert summary_rows == 1 + 3  # header + one row per video
    for number in range(3):
        assert f'href="#video-{number}"' in html_text
    assert html_text.count("the video has no audio track") == 1  # only in b's section
    assert len(page.videos[1].get("warning", [])) == 1 and not page.videos[0].get("warning")
    assert "capped" in html_text and "20:00" in html_text  # the cap is said, with the full length
    assert len(page.videos[2].get("warning", [])) == 1  # the capped video says so itself
    # settings: the shared ones once at the top, the differing one ("audio") per video
    assert html_text.count(">weights<") == 1 and html_text.count(">audio<") == 3


def test_each_video_links_to_its_file_and_plays_where_the_browser_can(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    playable = folder / "a clip #1.mp4"
    playable.write_bytes(b"\0" * 16)
    other = folder / "old.avi"
    other.write_bytes(b"\0" * 16)
    path = write_report([_result(playable, ["Car"], thumbnails=4), _result(other, ["Dog"])],
                        tmp_path / "report" / "report.html")
    page = _parse(path.read_text(encoding="utf-8"))
    videos = [attrs for tag, attrs in page.tags if tag == "video"]
    assert len(videos) == 1
    assert videos[0]["src"] == "../clips/a%20clip%20%231.mp4"  # relative to the report, escaped
    links = {attrs["href"] for tag, attrs in page.tags if tag == "a"}
    assert "../clips/old.avi" in links
    assert "../clips/a%20clip%20%231.mp4#t=2" in links  # an enlarged frame plays the video from there
    assert path.read_text(encoding="utf-8").count("data:image/jpeg") == 4  # each frame once
    assert (path.parent / "../clips/old.avi").resolve() == other.resolve()


def _long_results() -> list[ClassificationResult]:
    """A 10-minute clip (600 one-second thumbnails, 120 windows, names long and short) + a short one."""
    names = ["red_right", "blue_down", "green_circle",
             "A very long class name that must never be cut in the middle of the timeline", "Car"]
    labels = [LabelScore(i, name, 0.8 - 0.12 * i) for i, name in enumerate(names)]
    segments = []
    for window in range(120):
        top = (window // 6) % len(labels)  # runs of 6 windows (30 s) with the same top class
        order = [labels[top]] + [label for label in labels if label is not labels[top]][:2]
        segments.append(SegmentPrediction(5.0 * window, 5.0 * window + 5.0, order))
    long = ClassificationResult(
        source="/videos/ten minutes.mp4", video_id="ten-minutes", duration_seconds=600.0, num_frames=600,
        labels=labels, segments=segments, thumbnails=[_thumbnail(second) for second in range(600)],
        settings={"model": "demo", "weights": "random"}, warnings=[RANDOM_WARNING],
    )
    return [long, _results()[1]]


def test_long_clip_scales_ticks_zoom_and_strip():
    results = _long_results()
    html_text = render_report(results)
    page = _parse(html_text)
    _check_structure(page, results)
    video = page.videos[0]
    assert len(video["cell"]) == 600  # every second on hover
    assert len(video["thumb"]) == 600 // 15  # the strip: one frame every 15 s
    assert "one frame every 15 s" in html_text
    end_tick = video["end"][0]
    assert end_tick["style"] == "left: 100%"
    zooms = [attrs["id"] for tag, attrs in page.tags if tag == "input" and attrs.get("type") == "radio"]
    assert zooms == [f"zoom-0-{level}" for level in (1, 2, 4, 8, 16)]  # none for the 7-s clip
    ticks = video["tick"]
    assert len(ticks) > 20 and any("zl-8" in t["class"] for t in ticks)  # finer ticks when zoomed
    coarse = [t for t in ticks if "zl-1" in t["class"]]  # 1x: every minute
    assert [float(t["style"].split()[1].rstrip("%")) for t in coarse] == pytest.approx([10.0 * m for m in range(1, 10)])
    runs = video["run"]
    assert len(runs) == 20  # 120 windows, runs of 6 share one name


@needs_chromium
def test_long_clip_report_screenshots(tmp_path):
    """Screenshots of a 10-minute clip's report (default view, 8x zoom, an enlarged frame) into
    the test's output folder, checked for the timeline colours and the enlarged frame."""
    results = _long_results()
    path = write_report(results, tmp_path / "long.html")
    page = path.read_text(encoding="utf-8")
    variants = {
        "long.png": page,
        "long-zoom8.png": page.replace('class="z-1" checked', 'class="z-1"').replace(
            'class="z-8">', 'class="z-8" checked>'),
        "long-enlarged.png": page.replace('<details class="cell zoom" style="left: 50%', '<details open class="cell zoom" style="left: 50%', 1),
    }
    assert variants["long-zoom8.png"] != page and variants["long-enlarged.png"] != page
    shots = {}
    for name, text in variants.items():
        source = tmp_path / name.replace(".png", ".html")
        source.write_text(text, encoding="utf-8")
        shot = _chromium(tmp_path, source.as_uri(), f"--screenshot={tmp_path / name}",
                         f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars")
        assert shot.returncode == 0, shot.stderr[-2000:]
        assert _console_messages(shot.stderr) == []
        shots[name] = cv2.imread(str(tmp_path / name), cv2.IMREAD_COLOR)
        assert shots[name] is not None and shots[name].shape[:2] == (WINDOW[1], WINDOW[0])
    red, blue = (255, 0, 0), (0, 0, 255)
    assert _pixels_near(shots["long.png"], red) > 2000 and _pixels_near(shots["long.png"], blue) > 2000
    # the enlarged frame covers the middle of the window with its own colours and a dark backdrop
    middle = shots["long-enlarged.png"][WINDOW[1] // 2 - 50 : WINDOW[1] // 2 + 50, WINDOW[0] // 2 - 50 : WINDOW[0] // 2 + 50]
    assert float(middle.std()) > 5.0
    assert not np.array_equal(shots["long-enlarged.png"], shots["long.png"])
    assert not np.array_equal(shots["long-zoom8.png"], shots["long.png"])


def test_report_path_may_name_a_folder(tmp_path):
    """An existing folder, or a path ending in /, means: report.html in that folder."""
    from yt8m.app.report import REPORT_NAME, resolve_report_path

    new = f"{tmp_path / 'new'}/"
    assert resolve_report_path(new) == tmp_path / "new" / REPORT_NAME
    path = write_report(_results(), new)
    assert path == tmp_path / "new" / REPORT_NAME and path.is_file()
    assert resolve_report_path(tmp_path / "new") == path  # now an existing folder
    assert resolve_report_path(tmp_path / "page.html") == tmp_path / "page.html"
    with pytest.raises(Yt8mError, match="report path is empty"):
        resolve_report_path("")
