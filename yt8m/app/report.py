"""The HTML report of a `classify` run: one self-contained page for all the videos of the run.

Top of the page: a summary table of every video, then the warnings and settings that hold for
the whole run, stated once. Per video: a header with a link to the file (and a `<video>` player
where browsers play the format), the warnings of that video only, the video-level labels as bars,
a timeline (one hover cell per sampled frame that shows that frame, the segment windows coloured
by their top class, ticks to the end, zoom levels for long videos), a strip of thumbnails every
N seconds, and the settings that differ from the run's.

Colours follow the class, the same on the whole page: a class whose name holds a CSS colour word
(`red_right`) is drawn in that colour; the others get a palette colour chosen from their name, so
a class keeps it from one report to the next. Classes that must share a colour are told apart by
stripes. Labels are never cut: bars wrap their names, a window's name is written only where it
fits, and every window and frame has a tooltip.

Everything is inline (CSS, JPEG thumbnails as data URIs); there is no script: zoom, hover
previews and click-to-enlarge are plain CSS (radio buttons, :hover, <details>). A
Content-Security-Policy forbids loading anything but the page's own data and the videos next to
it, so the page can be mailed or archived and opened offline.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import math
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cv2
import numpy as np

from yt8m import __version__
from yt8m.app.flags import cli_message
from yt8m.classifier.results import ClassificationResult, LabelScore, SegmentPrediction
from yt8m.core import Yt8mError
from yt8m.data.files import write_text

REPORT_NAME = "report.html"  # the file written into a folder given as the report path
THUMB_MAX_HEIGHT = 144  # pixels; taller thumbnails are shrunk (keeping aspect) before encoding
THUMB_JPEG_QUALITY = 80
STRIP_MAX_THUMBS = 40  # the thumbnail strip shows one frame every N s, N chosen to stay under this
NICE_STEPS_S: tuple[int, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)
TICKS_PER_VIEW = 10  # axis ticks across the visible width, at every zoom level
ZOOM_LEVELS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
ZOOM_MIN_VISIBLE_S = 30.0  # a zoom level is offered while the visible span stays at least this long
TIMELINE_TOOLTIP_LABELS = 3  # labels listed in a segment's tooltip
LABEL_CHAR_REM = 0.5  # estimated width of one character of a window name, for "does it fit"
LABEL_PAD_REM = 0.9
LABEL_FIT_MAX_REM = 40
PLAYABLE_SUFFIXES = frozenset({".mp4", ".m4v", ".webm", ".ogv", ".ogg", ".mov", ".mkv"})
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; media-src 'self' file:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
# Classes without a colour word: distinguishable fills (Tableau 20), picked by a hash of the name.
SEGMENT_PALETTE: tuple[str, ...] = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#a0cbe8", "#ffbe7d", "#8cd17d", "#b6992d", "#499894", "#86bcb6",
    "#d37295", "#fabfd2", "#79706e", "#d4a6c8",
)
PALETTE_MIN_DISTANCE = 90.0  # RGB distance a palette fill keeps from the page's name colours
STRIPES = "repeating-linear-gradient(135deg, rgba(255,255,255,.45) 0 5px, transparent 5px 10px)"
# CSS named colours (CSS Color Module Level 4), matched against the words of class names.
CSS_COLOURS: dict[str, str] = {
    "aliceblue": "#f0f8ff", "antiquewhite": "#faebd7", "aqua": "#00ffff", "aquamarine": "#7fffd4",
    "azure": "#f0ffff", "beige": "#f5f5dc", "bisque": "#ffe4c4", "black": "#000000",
    "blanchedalmond": "#ffebcd", "blue": "#0000ff", "blueviolet": "#8a2be2", "brown": "#a52a2a",
    "burlywood": "#deb887", "cadetblue": "#5f9ea0", "chartreuse": "#7fff00", "chocolate": "#d2691e",
    "coral": "#ff7f50", "cornflowerblue": "#6495ed", "cornsilk": "#fff8dc", "crimson": "#dc143c",
    "cyan": "#00ffff", "darkblue": "#00008b", "darkcyan": "#008b8b", "darkgoldenrod": "#b8860b",
    "darkgray": "#a9a9a9", "darkgreen": "#006400", "darkgrey": "#a9a9a9", "darkkhaki": "#bdb76b",
    "darkmagenta": "#8b008b", "darkolivegreen": "#556b2f", "darkorange": "#ff8c00",
    "darkorchid": "#9932cc", "darkred": "#8b0000", "darksalmon": "#e9967a", "darkseagreen": "#8fbc8f",
    "darkslateblue": "#483d8b", "darkslategray": "#2f4f4f", "darkslategrey": "#2f4f4f",
    "darkturquoise": "#00ced1", "darkviolet": "#9400d3", "deeppink": "#ff1493",
    "deepskyblue": "#00bfff", "dimgray": "#696969", "dimgrey": "#696969", "dodgerblue": "#1e90ff",
    "firebrick": "#b22222", "floralwhite": "#fffaf0", "forestgreen": "#228b22", "fuchsia": "#ff00ff",
    "gainsboro": "#dcdcdc", "ghostwhite": "#f8f8ff", "gold": "#ffd700", "goldenrod": "#daa520",
    "gray": "#808080", "green": "#008000", "greenyellow": "#adff2f", "grey": "#808080",
    "honeydew": "#f0fff0", "hotpink": "#ff69b4", "indianred": "#cd5c5c", "indigo": "#4b0082",
    "ivory": "#fffff0", "khaki": "#f0e68c", "lavender": "#e6e6fa", "lavenderblush": "#fff0f5",
    "lawngreen": "#7cfc00", "lemonchiffon": "#fffacd", "lightblue": "#add8e6", "lightcoral": "#f08080",
    "lightcyan": "#e0ffff", "lightgoldenrodyellow": "#fafad2", "lightgray": "#d3d3d3",
    "lightgreen": "#90ee90", "lightgrey": "#d3d3d3", "lightpink": "#ffb6c1", "lightsalmon": "#ffa07a",
    "lightseagreen": "#20b2aa", "lightskyblue": "#87cefa", "lightslategray": "#778899",
    "lightslategrey": "#778899", "lightsteelblue": "#b0c4de", "lightyellow": "#ffffe0",
    "lime": "#00ff00", "limegreen": "#32cd32", "linen": "#faf0e6", "magenta": "#ff00ff",
    "maroon": "#800000", "mediumaquamarine": "#66cdaa", "mediumblue": "#0000cd",
    "mediumorchid": "#ba55d3", "mediumpurple": "#9370db", "mediumseagreen": "#3cb371",
    "mediumslateblue": "#7b68ee", "mediumspringgreen": "#00fa9a", "mediumturquoise": "#48d1cc",
    "mediumvioletred": "#c71585", "midnightblue": "#191970", "mintcream": "#f5fffa",
    "mistyrose": "#ffe4e1", "moccasin": "#ffe4b5", "navajowhite": "#ffdead", "navy": "#000080",
    "oldlace": "#fdf5e6", "olive": "#808000", "olivedrab": "#6b8e23", "orange": "#ffa500",
    "orangered": "#ff4500", "orchid": "#da70d6", "palegoldenrod": "#eee8aa", "palegreen": "#98fb98",
    "paleturquoise": "#afeeee", "palevioletred": "#db7093", "papayawhip": "#ffefd5",
    "peachpuff": "#ffdab9", "peru": "#cd853f", "pink": "#ffc0cb", "plum": "#dda0dd",
    "powderblue": "#b0e0e6", "purple": "#800080", "rebeccapurple": "#663399", "red": "#ff0000",
    "rosybrown": "#bc8f8f", "royalblue": "#4169e1", "saddlebrown": "#8b4513", "salmon": "#fa8072",
    "sandybrown": "#f4a460", "seagreen": "#2e8b57", "seashell": "#fff5ee", "sienna": "#a0522d",
    "silver": "#c0c0c0", "skyblue": "#87ceeb", "slateblue": "#6a5acd", "slategray": "#708090",
    "slategrey": "#708090", "snow": "#fffafa", "springgreen": "#00ff7f", "steelblue": "#4682b4",
    "tan": "#d2b48c", "teal": "#008080", "thistle": "#d8bfd8", "tomato": "#ff6347",
    "turquoise": "#40e0d0", "violet": "#ee82ee", "wheat": "#f5deb3", "white": "#ffffff",
    "whitesmoke": "#f5f5f5", "yellow": "#ffff00", "yellowgreen": "#9acd32",
}
_COLOUR_WORDS_MAX = 3  # "light sea green" -> lightseagreen

_CSS = """
:root {
  --bg: #f6f7f9; --card: #ffffff; --text: #1f2328; --muted: #59636e; --border: #d8dee4;
  --accent: #3b82c4; --track: #e8edf2; --warn-bg: #fff4d6; --warn-border: #d4a017; --warn-text: #5c4400;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #16191d; --card: #1f2328; --text: #e6e8eb; --muted: #9aa4ae; --border: #363c44;
    --accent: #5a9fdc; --track: #2c323a; --warn-bg: #3d3210; --warn-border: #c99a1e; --warn-text: #f5deb0;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--text); line-height: 1.45;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans",
    "Liberation Sans", sans-serif;
}
a { color: var(--accent); }
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 0; overflow-wrap: anywhere; }
h3 { font-size: .95rem; margin: 1.25rem 0 .5rem; color: var(--muted); font-weight: 600;
  text-transform: uppercase; letter-spacing: .04em; }
.page-meta, .note { color: var(--muted); font-size: .9rem; margin: 0; }
.card { background: var(--card); border: 1px solid var(--border); border-radius: 10px;
  padding: 1.25rem 1.25rem 1rem; margin-top: 1.25rem; }
table.summary { border-collapse: collapse; width: 100%; font-size: .9rem; }
table.summary th, table.summary td { text-align: left; vertical-align: top; padding: .35rem .5rem;
  border-top: 1px solid var(--border); overflow-wrap: anywhere; }
table.summary th { color: var(--muted); font-weight: 500; border-top: 0; }
table.summary .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.facts { display: flex; flex-wrap: wrap; gap: .25rem 1.5rem; margin: .4rem 0 0; font-size: .9rem; }
.facts div { display: flex; gap: .4rem; min-width: 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.warning { background: var(--warn-bg); border: 1px solid var(--warn-border);
  border-left-width: 6px; color: var(--warn-text); border-radius: 6px;
  padding: .6rem .9rem; margin: 1rem 0 0; }
.warning strong { display: block; }
.warning ul { margin: .3rem 0 0; padding-left: 1.2rem; }
.capped { font-weight: 600; color: var(--warn-text); background: var(--warn-bg); border-radius: 4px;
  padding: 0 .3rem; }
.overview { display: grid; grid-template-columns: minmax(0, 22rem) minmax(0, 1fr); gap: 1.25rem;
  align-items: start; margin-top: 1rem; }
.overview.no-player { grid-template-columns: minmax(0, 1fr); }
.player video { width: 100%; max-height: 16rem; background: #000; border-radius: 6px; display: block; }
.player p { margin: .3rem 0 0; font-size: .85rem; }
.labels { list-style: none; margin: 0; padding: 0; }
.label-bar { display: grid; grid-template-columns: minmax(6rem, 15rem) minmax(0, 1fr) 3.2rem;
  align-items: center; gap: .75rem; padding: .12rem 0; }
.label-name { overflow-wrap: anywhere; font-size: .92rem; line-height: 1.25; }
.bar { display: block; height: .85rem; background: var(--track); border-radius: 3px; overflow: hidden; }
.fill { display: block; height: 100%; border-radius: 3px; box-shadow: inset 0 0 0 1px rgba(0,0,0,.15); }
.label-score { text-align: right; font-variant-numeric: tabular-nums; font-size: .9rem; }
.zoomable { display: flex; flex-wrap: wrap; align-items: center; gap: .3rem; font-size: .82rem; }
.zoomable > .timeline-scroll { flex: 1 1 100%; min-width: 0; margin-top: .2rem; font-size: 1rem; }
.zoom-title { color: var(--muted); }
.zoomable > input { position: absolute; opacity: 0; pointer-events: none; }
.zoomable > label { border: 1px solid var(--border); border-radius: 4px; padding: .05rem .45rem;
  cursor: pointer; color: var(--text); background: var(--card); }
.zoomable > input:checked + label { background: var(--accent); border-color: var(--accent); color: #fff; }
.zoomable > input:focus-visible + label { outline: 2px solid var(--accent); outline-offset: 1px; }
.timeline-scroll { overflow-x: auto; overflow-y: hidden; padding-bottom: 4px; }
.timeline-inner { position: relative; width: 100%; padding-top: 0; }
.frames { position: relative; height: 1.5rem; background: var(--track); border-radius: 4px 4px 0 0; }
.frames::before { content: "frames: point to preview, click to enlarge"; position: absolute; left: .5rem;
  top: .2rem; font-size: .72rem; color: var(--muted); pointer-events: none; white-space: nowrap; }
.cell { position: absolute; top: 0; bottom: 0; margin: 0; }
.cell > summary { display: block; height: 100%; cursor: zoom-in; list-style: none; }
.cell > summary:hover, .cell > summary:focus-visible { background: var(--accent); outline: 0; }
.cell img { display: none; position: absolute; top: calc(100% + 3px); left: 50%; transform: translateX(-50%);
  height: 4.2rem; width: auto; max-width: none; z-index: 5; border-radius: 4px;
  border: 2px solid var(--card); box-shadow: 0 2px 10px rgba(0,0,0,.35); pointer-events: none; }
.cell.early img { left: 0; transform: none; }
.cell.late img { left: auto; right: 0; transform: none; }
.cell > summary:hover img, .cell > summary:focus-visible img { display: block; }
.timeline { position: relative; height: 3.3rem; margin-top: 2px; }
.segment { position: absolute; top: 0; bottom: 0; border-right: 1px solid var(--card);
  box-shadow: inset 0 0 0 1px rgba(0,0,0,.12); }
.segment.empty { background: var(--track); }
.run { position: absolute; top: 0; bottom: 0; pointer-events: none; container-type: inline-size;
  padding: .2rem .35rem; overflow: hidden; }
.run span { display: block; font-size: .78rem; line-height: 1.2; overflow-wrap: anywhere; }
.axis { position: relative; height: 1.3rem; font-size: .72rem; color: var(--muted);
  border-top: 1px solid var(--border); }
.tick { position: absolute; top: 0; transform: translateX(-50%); font-variant-numeric: tabular-nums;
  white-space: nowrap; padding-top: .1rem; }
.tick::before { content: ""; position: absolute; left: 50%; top: -4px; height: 4px; border-left: 1px solid var(--muted); }
.tick.start { transform: none; }
.tick.start::before { left: 0; }
.tick.end { transform: translateX(-100%); font-weight: 600; }
.tick.end::before { left: calc(100% - 1px); }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: .3rem 1rem; padding: 0;
  margin: .5rem 0 0; font-size: .85rem; }
.legend li { overflow-wrap: anywhere; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px;
  margin-right: .35rem; vertical-align: -1px; box-shadow: inset 0 0 0 1px rgba(0,0,0,.2); }
.thumbs { display: flex; flex-wrap: wrap; gap: 6px; }
.frame { margin: 0; flex: 0 0 auto; text-align: center; }
details.zoom > summary { list-style: none; cursor: zoom-in; }
details.zoom > summary::-webkit-details-marker { display: none; }
.thumb { display: block; height: 54px; width: auto; border-radius: 4px; border: 1px solid var(--border); }
.frame-time { font-size: .75rem; color: var(--muted); font-variant-numeric: tabular-nums; }
details.zoom[open] > summary::before { content: ""; position: fixed; inset: 0; z-index: 20;
  background: rgba(0,0,0,.78); cursor: zoom-out; }
details.zoom[open] > summary > img { display: block; position: fixed; z-index: 21; top: 46%; left: 50%;
  right: auto; transform: translate(-50%, -50%); width: auto; height: min(60vh, 30rem); max-width: 94vw;
  max-height: 84vh; border: 0; border-radius: 4px; cursor: zoom-out; pointer-events: auto; }
details.zoom[open] > .zoom-caption { position: fixed; z-index: 21; left: 0; right: 0; bottom: 4vh;
  text-align: center; color: #fff; font-size: .95rem; }
details.zoom[open] > .zoom-caption a { color: #9cc8f0; }
details.zoom:not([open]) > .zoom-caption { display: none; }
table.settings { border-collapse: collapse; width: 100%; font-size: .9rem; }
table.settings th, table.settings td { text-align: left; vertical-align: top; padding: .3rem .5rem;
  border-top: 1px solid var(--border); }
table.settings th { width: 14rem; color: var(--muted); font-weight: 500; }
table.settings td { overflow-wrap: anywhere; font-family: ui-monospace, SFMono-Regular, Menlo,
  Consolas, "Liberation Mono", monospace; font-size: .85rem; }
@media (max-width: 720px) {
  .overview { grid-template-columns: minmax(0, 1fr); }
  .label-bar { grid-template-columns: minmax(0, 1fr) 3.2rem; }
  .label-bar .bar { grid-column: 1 / -1; grid-row: 2; }
  table.settings th { width: auto; }
}
"""


def _e(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _clock(seconds: float) -> str:
    """`m:ss` (or `h:mm:ss`) for axis ticks and window ranges."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _percent(value: float) -> str:
    return f"{value * 100:.4f}".rstrip("0").rstrip(".") + "%"


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _text_colour(background: str) -> str:
    """Black or white text, whichever reads better on the given `#rrggbb` fill."""
    red, green, blue = _rgb(background)
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    return "#111111" if luminance > 150 else "#ffffff"


def _nice_step(span: float, count: int) -> int:
    """The smallest of NICE_STEPS_S that cuts `span` seconds into at most `count` parts."""
    for step in NICE_STEPS_S:
        if span / step <= count:
            return step
    return NICE_STEPS_S[-1]


def encode_thumbnail(image: np.ndarray, max_height: int = THUMB_MAX_HEIGHT) -> str:
    """A `data:image/jpeg;base64,...` URI for an RGB (or grey) uint8 image, shrunk to `max_height`."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"thumbnails must be uint8 images, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"thumbnails must be HxWx3 RGB images, got shape {array.shape}")
    array = array[:, :, :3]
    height, width = array.shape[:2]
    if height > max_height:
        new_width = max(1, int(round(width * max_height / height)))
        array = cv2.resize(array, (new_width, max_height), interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, THUMB_JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode a thumbnail as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


# --------------------------------------------------------------------------------------- colours


def colour_word(name: str) -> str | None:
    """The CSS colour a class name spells (`red_right` -> red, `DarkRed car` -> darkred), or None.

    The name is cut into words (non-letters and camelCase split them); the longest run of up to
    three consecutive words that is a CSS colour name wins, the first one on equal length.
    """
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name))
    words = re.findall(r"[a-z]+", spaced.lower())
    for size in range(_COLOUR_WORDS_MAX, 0, -1):
        for start in range(len(words) - size + 1):
            candidate = "".join(words[start : start + size])
            if candidate in CSS_COLOURS:
                return candidate
    return None


@dataclass(frozen=True)
class ClassColour:
    """How one class is painted everywhere on the page."""

    fill: str  # "#rrggbb"
    striped: bool  # a second class with the same fill

    @property
    def text(self) -> str:
        return _text_colour(self.fill)

    def style(self) -> str:
        """Inline CSS for a block or bar of this class."""
        stripes = f"; background-image: {STRIPES}" if self.striped else ""
        return f"background-color: {self.fill}{stripes}"


def _distance(first: str, second: str) -> float:
    return math.dist(_rgb(first), _rgb(second))


class ClassColours:
    """Colours for every class of a page, fixed before anything is drawn.

    Classes whose name holds a CSS colour word get that colour. The others get a palette colour
    picked by a hash of the name (stable from one report to the next), moved on to the next
    free one when taken on this page or too close to a name colour; once the palette is used up,
    colours repeat with stripes.
    """

    def __init__(self, classes: dict[int, str]) -> None:
        self._by_index: dict[int, ClassColour] = {}
        used: dict[str, int] = {}
        named = {index: CSS_COLOURS[word] for index, name in classes.items() if (word := colour_word(name))}
        for index in sorted(named):
            fill = named[index]
            self._by_index[index] = ClassColour(fill, striped=fill in used)
            used[fill] = used.get(fill, 0) + 1
        reserved = set(named.values())
        for index in sorted(set(classes) - set(named)):
            start = zlib.crc32(classes[index].encode("utf-8")) % len(SEGMENT_PALETTE)
            order = [SEGMENT_PALETTE[(start + step) % len(SEGMENT_PALETTE)] for step in range(len(SEGMENT_PALETTE))]
            free = [c for c in order if c not in used and all(_distance(c, r) >= PALETTE_MIN_DISTANCE for r in reserved)]
            fill = free[0] if free else next((c for c in order if c not in used), order[0])
            self._by_index[index] = ClassColour(fill, striped=fill in used)
            used[fill] = used.get(fill, 0) + 1

    def __call__(self, label: LabelScore) -> ClassColour:
        return self._by_index.get(int(label.index), ClassColour(SEGMENT_PALETTE[0], striped=True))

    @classmethod
    def of_results(cls, results: Sequence[ClassificationResult]) -> "ClassColours":
        classes: dict[int, str] = {}
        for result in results:
            for label in result.labels:
                classes.setdefault(int(label.index), str(label.name))
            for segment in result.segments:
                for label in segment.labels[:1]:
                    classes.setdefault(int(label.index), str(label.name))
        return cls(classes)


# ----------------------------------------------------------------------------------- per video


@dataclass
class _Video:
    """What the page needs of one result, including the fields newer results may carry."""

    number: int
    result: ClassificationResult
    name: str
    href: str | None  # link to the file, relative to the report where possible
    playable: bool
    end: float  # seconds shown on the timeline
    seconds_per_frame: float
    capped: bool
    full_duration: float | None
    thumbs: list[str]  # data URIs, one per sampled frame

    @property
    def anchor(self) -> str:
        return f"video-{self.number}"


def _file_href(source: str, base_dir: Path | None) -> str | None:
    """A URL for the video file: relative to the report's folder when possible, else file://."""
    path = Path(source)
    if not source or not path.is_file():
        return None
    path = path.resolve()
    if base_dir is not None:
        with contextlib.suppress(ValueError):
            return quote(Path(os.path.relpath(path, base_dir.resolve())).as_posix())
    return path.as_uri()


def _video(number: int, result: ClassificationResult, base_dir: Path | None) -> _Video:
    fps = float(result.fps or 0) or 1.0  # results hold one thumbnail per sampled frame
    seconds_per_frame = 1.0 / fps
    duration = float(result.duration_seconds or 0.0)
    ends = [duration, len(result.thumbnails) * seconds_per_frame] + [float(s.end_seconds) for s in result.segments]
    end = max(ends) if max(ends) > 0 else 1.0
    full = result.source_duration_seconds
    capped = bool(result.capped)
    href = _file_href(str(result.source), base_dir)
    return _Video(
        number=number,
        result=result,
        name=os.path.basename(str(result.source).rstrip("/\\")) or str(result.video_id) or "video",
        href=href,
        playable=href is not None and Path(str(result.source)).suffix.lower() in PLAYABLE_SUFFIXES,
        end=end,
        seconds_per_frame=seconds_per_frame,
        capped=capped,
        full_duration=float(full) if full is not None else None,
        thumbs=[encode_thumbnail(image) for image in result.thumbnails],
    )


def _duration_text(video: _Video) -> str:
    duration = float(video.result.duration_seconds)
    text = f"{_clock(duration)} ({duration:.1f} s)"
    if video.capped:
        whole = f" of {_clock(video.full_duration)}" if video.full_duration else ""
        text += f", first {_clock(duration)}{whole} analysed (frame cap)"
    return text


def _header(video: _Video) -> str:
    result = video.result
    facts = [("file", str(result.source)), ("video id", str(result.video_id)),
             ("duration", _duration_text(video)), ("frames", str(int(result.num_frames)))]
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    title = _e(video.name)
    if video.href:
        title = f'<a href="{_e(video.href)}" title="open the video file">{title}</a>'
    return f'<header><h2 title="{_e(result.source)}">{title}</h2><dl class="facts">{items}</dl></header>'


def _warning_box(warnings: Sequence[str], title: str) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{_e(cli_message(w))}</li>" for w in warnings)  # parameters named as options
    return f'<div class="warning" role="alert"><strong>&#9888; {_e(title)}</strong><ul>{items}</ul></div>'


def _player(video: _Video) -> str:
    if not video.playable:
        if video.href:
            return (f'<div class="player"><p><a href="{_e(video.href)}">open {_e(video.name)}</a> '
                    "(browsers do not play this format inline)</p></div>")
        return ""
    return (  # no poster: each frame is in the page once (preload shows the video's own first frame)
        f'<div class="player"><video controls preload="metadata" src="{_e(video.href)}">'
        f'<a href="{_e(video.href)}">{_e(video.name)}</a></video>'
        f'<p><a href="{_e(video.href)}">open {_e(video.name)}</a></p></div>'
    )


def _labels(result: ClassificationResult, colours: ClassColours) -> str:
    if not result.labels:
        return '<div><h3>Video-level labels</h3><p class="note">No labels.</p></div>'
    rows = []
    for label in result.labels:
        colour = colours(label)
        width = _percent(min(max(float(label.score), 0.0), 1.0))
        rows.append(
            f'<li class="label-bar"><span class="label-name" title="{_e(label.name)} (class {int(label.index)})">'
            f"{_e(label.name)}</span>"
            f'<span class="bar"><span class="fill" style="width: {width}; {colour.style()}"></span></span>'
            f'<span class="label-score">{float(label.score):.3f}</span></li>'
        )
    return f'<div><h3>Video-level labels</h3><ol class="labels">{"".join(rows)}</ol></div>'


def _zoom_caption(video: _Video, second: float) -> str:
    link = ""
    if video.href:
        link = f' &middot; <a href="{_e(video.href)}#t={second:g}">play from {_clock(second)}</a>'
    return f'<div class="zoom-caption">{_e(video.name)} at {_clock(second)}{link}</div>'


def _zoom_levels(end: float) -> list[int]:
    return [level for level in ZOOM_LEVELS if level == 1 or end / level >= ZOOM_MIN_VISIBLE_S]


def _ticks(end: float, levels: Sequence[int]) -> str:
    """Axis ticks: coarse at 1x, finer ones shown from the zoom level that has room for them."""
    steps: dict[int, int] = {}
    for level in levels:  # each level's step divides the coarser one, so ticks stay evenly spaced
        step = _nice_step(end, TICKS_PER_VIEW * level)
        coarser = steps.get(level // 2)
        while coarser is not None and coarser % step:
            step = max(s for s in NICE_STEPS_S if s < step)
        steps[level] = step
    shown: dict[int, int] = {}  # second -> first zoom level showing it
    for level in levels:
        step = steps[level]
        for second in range(0, int(math.floor(end)) + 1, step):
            if second in shown or second == 0:
                continue
            if end - second < 0.45 * step:  # too close to the end label at this level
                continue
            shown[second] = level
    parts = ['<span class="tick start" style="left: 0%">0:00</span>']
    for second in sorted(shown):
        parts.append(f'<span class="tick zl-{shown[second]}" style="left: {_percent(second / end)}">{_clock(second)}</span>')
    parts.append(f'<span class="tick end" style="left: 100%">{_clock(end)}</span>')
    return "".join(parts)


def _segment_tooltip(segment: SegmentPrediction) -> str:
    lines = [f"{_clock(segment.start_seconds)}\u2013{_clock(segment.end_seconds)}"]
    for rank, label in enumerate(segment.labels[:TIMELINE_TOOLTIP_LABELS], start=1):
        lines.append(f"{rank}. {label.name} {float(label.score):.3f}")
    return "\n".join(lines)


def _fit_class(name: str) -> str:
    """A `fit-N` class: the name needs about N rem to be written whole (on up to two lines)."""
    longest_word = max((len(word) for word in str(name).split()), default=1)
    chars = max(longest_word, math.ceil(len(str(name)) / 2))
    needed = min(LABEL_FIT_MAX_REM, math.ceil(chars * LABEL_CHAR_REM + LABEL_PAD_REM))
    return f"fit-{needed}"


def _segments(video: _Video, colours: ClassColours) -> tuple[str, str]:
    """The coloured windows and the names over runs of equal top classes; and the legend."""
    end = video.end
    blocks, runs, legend = [], [], {}
    current: list[Any] | None = None  # [index, name, colour, start, stop]
    for segment in sorted(video.result.segments, key=lambda s: float(s.start_seconds)):
        start = max(0.0, float(segment.start_seconds))
        stop = max(start, float(segment.end_seconds))
        style = f"left: {_percent(start / end)}; width: {_percent((stop - start) / end)}"
        tooltip = _e(_segment_tooltip(segment))
        if not segment.labels:
            blocks.append(f'<div class="segment empty" style="{style}" title="{tooltip}"></div>')
            current = None
            continue
        top = segment.labels[0]
        colour = colours(top)
        legend.setdefault(int(top.index), (str(top.name), colour))
        blocks.append(f'<div class="segment" style="{style}; {colour.style()}" title="{tooltip}"></div>')
        if current is not None and current[0] == int(top.index) and abs(current[4] - start) < 1e-6:
            current[4] = stop
        else:
            current = [int(top.index), str(top.name), colour, start, stop]
            runs.append(current)
    run_html = "".join(
        f'<div class="run" style="left: {_percent(a / end)}; width: {_percent((b - a) / end)}; color: {c.text}">'
        f'<span class="{_fit_class(n)}">{_e(n)}</span></div>'
        for _, n, c, a, b in runs
    )
    swatches = "".join(
        f'<li><span class="swatch" style="{colour.style()}"></span>{_e(name)}</li>' for name, colour in legend.values()
    )
    return "".join(blocks) + run_html, (f'<ul class="legend">{swatches}</ul>' if swatches else "")


def _frame_cells(video: _Video) -> str:
    cells = []
    step = video.seconds_per_frame
    for number, uri in enumerate(video.thumbs):
        second = number * step
        where = second / video.end
        side = " early" if where < 0.08 else (" late" if where > 0.92 else "")
        style = f"left: {_percent(where)}; width: {_percent(step / video.end)}"
        cells.append(
            f'<details class="cell zoom{side}" style="{style}"><summary title="{_clock(second)}">'
            f'<img src="{uri}" alt="frame at {_clock(second)}"></summary>{_zoom_caption(video, second)}</details>'
        )
    return "".join(cells)


def _timeline(video: _Video, colours: ClassColours) -> str:
    levels = _zoom_levels(video.end)
    blocks, legend = _segments(video, colours)
    controls = ""
    if len(levels) > 1:  # radio buttons, siblings of the scroll box for the `:checked ~` rules
        name = f"zoom-{video.number}"
        controls = '<span class="zoom-title">zoom</span>' + "".join(
            f'<input type="radio" name="{name}" id="{name}-{level}" class="z-{level}"{" checked" if level == 1 else ""}>'
            f'<label for="{name}-{level}">{level}&times;</label>'
            for level in levels
        )
    notes = []
    # The frames row (every frame on hover) only when the strip below leaves frames out: each
    # image is then in the page once, or twice for the strip's one-in-N.
    hover_frames = bool(video.thumbs) and _strip_stride(video)[1] > 1
    if not video.result.segments:
        notes.append("no segment predictions in this run (classify --segments adds them)")
    note = f'<p class="note">{_e("; ".join(notes)).capitalize()}.</p>' if notes else ""
    title = "Timeline" + (", top label per window" if video.result.segments else "")
    if not video.result.segments and not hover_frames:
        return f"<h3>{title}</h3>{note}"
    frames = f'<div class="frames">{_frame_cells(video)}</div>' if hover_frames else ""
    inner = (
        f'<div class="timeline-scroll"><div class="timeline-inner">{frames}'
        f'<div class="timeline">{blocks}</div><div class="axis">{_ticks(video.end, levels)}</div></div></div>'
    )
    if controls:
        inner = f'<div class="zoomable">{controls}{inner}</div>'
    return f"<h3>{title}</h3>{note}{inner}{legend}"


def _strip_stride(video: _Video) -> tuple[int, int]:
    """(seconds, frames) between the thumbnails of the strip: at most STRIP_MAX_THUMBS of them."""
    every = _nice_step(len(video.thumbs) * video.seconds_per_frame, STRIP_MAX_THUMBS)
    return every, max(1, int(round(every / video.seconds_per_frame)))


def _strip(video: _Video) -> str:
    if not video.thumbs:
        return ""
    every, stride = _strip_stride(video)
    figures = []
    for number in range(0, len(video.thumbs), stride):
        second = number * video.seconds_per_frame
        figures.append(
            f'<figure class="frame"><details class="zoom"><summary title="{_clock(second)}: click to enlarge">'
            f'<img class="thumb" src="{video.thumbs[number]}" alt="frame at {_clock(second)}"></summary>'
            f'{_zoom_caption(video, second)}</details><figcaption class="frame-time">{_clock(second)}</figcaption></figure>'
        )
    what = "every frame" if stride == 1 else f"one frame every {every} s"
    return f'<h3>Frames, {what}</h3><div class="thumbs">{"".join(figures)}</div>'


def _settings_table(settings: dict[str, str], title: str) -> str:
    if not settings:
        return ""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in settings.items())
    return f'<h3>{_e(title)}</h3><table class="settings"><tbody>{rows}</tbody></table>'


def _section(video: _Video, colours: ClassColours, warnings: list[str], settings: dict[str, str]) -> str:
    player = _player(video)
    overview_class = "overview" if player else "overview no-player"
    return (
        f'<section class="video card" id="{video.anchor}">'
        + _header(video)
        + _warning_box(warnings, "About this video")
        + f'<div class="{overview_class}">{player}{_labels(video.result, colours)}</div>'
        + _timeline(video, colours)
        + _strip(video)
        + _settings_table(settings, "Settings of this video")
        + "</section>"
    )


# ----------------------------------------------------------------------------------- the page


def _shared(results: Sequence[ClassificationResult]) -> tuple[list[str], dict[str, str]]:
    """The warnings and settings every video has (stated once at the top of the page)."""
    if not results:
        return [], {}
    warnings = [w for w in dict.fromkeys(results[0].warnings) if all(w in r.warnings for r in results[1:])]
    settings = {
        key: value for key, value in results[0].settings.items()
        if all(r.settings.get(key) == value for r in results[1:])
    }
    return warnings, settings


def _video_warnings(video: _Video, shared: list[str]) -> list[str]:
    own = [w for w in dict.fromkeys(video.result.warnings) if w not in shared]
    if video.capped and not any("cap" in w.lower() for w in own + shared):
        own.append(f"only the first {_clock(video.result.duration_seconds)} of this video were analysed (frame cap)")
    return own


def _summary(videos: list[_Video], colours: ClassColours, own_warnings: dict[int, list[str]]) -> str:
    rows = []
    for video in videos:
        result = video.result
        top = ""
        if result.labels:
            best = result.labels[0]
            top = (f'<span class="swatch" style="{colours(best).style()}"></span>{_e(best.name)} '
                   f"({float(best.score):.2f})")
        notes = []
        if video.capped:
            notes.append('<span class="capped">capped</span>')
        count = len(own_warnings[video.number])
        if count:
            notes.append(f"{count} warning" + ("" if count == 1 else "s"))
        rows.append(
            f'<tr><td class="num">{video.number + 1}</td>'
            f'<td><a href="#{video.anchor}" title="{_e(result.source)}">{_e(video.name)}</a></td>'
            f'<td class="num">{_clock(result.duration_seconds)}</td><td class="num">{int(result.num_frames)}</td>'
            f"<td>{top}</td><td class=\"num\">{len(result.segments)}</td><td>{', '.join(notes)}</td></tr>"
        )
    head = ('<tr><th class="num">#</th><th>video</th><th class="num">duration</th><th class="num">frames</th>'
            '<th>top label</th><th class="num">windows</th><th>notes</th></tr>')
    return f'<table class="summary"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _fit_rules() -> str:
    """Container queries hiding a window name where its run is narrower than the name needs."""
    return "".join(
        f"@container (width < {n}rem) {{ .fit-{n} {{ visibility: hidden; }} }}\n"
        for n in range(2, LABEL_FIT_MAX_REM + 1)
    )


def _zoom_rules() -> str:
    """Widths and tick visibility per zoom level (radio button checked -> wider inner timeline)."""
    rules = []
    for level in ZOOM_LEVELS[1:]:
        rules.append(f".zl-{level} {{ display: none; }}")
    for level in ZOOM_LEVELS:
        scope = f".z-{level}:checked ~ .timeline-scroll"
        rules.append(f"{scope} .timeline-inner {{ width: {level * 100}%; }}")
        shown = ", ".join(f"{scope} .zl-{lower}" for lower in ZOOM_LEVELS if lower <= level)
        rules.append(f"{shown} {{ display: block; }}")
    return "\n".join(rules) + "\n"


def render_report(
    results: Sequence[ClassificationResult],
    title: str = "yt8m classification report",
    base_dir: str | os.PathLike | None = None,
) -> str:
    """The whole HTML page as a string (see `write_report`).

    `base_dir` is the folder the page will be saved in: links to the videos are made relative
    to it (absolute file:// links without it).
    """
    results = list(results)
    base = Path(base_dir) if base_dir is not None else None
    colours = ClassColours.of_results(results)
    videos = [_video(number, result, base) for number, result in enumerate(results)]
    shared_warnings, shared_settings = _shared(results)
    own_warnings = {video.number: _video_warnings(video, shared_warnings) for video in videos}
    sections = []
    for video in videos:
        own_settings = {k: v for k, v in video.result.settings.items() if k not in shared_settings}
        sections.append(_section(video, colours, own_warnings[video.number], own_settings))
    generated = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    count = f"{len(results)} video" + ("" if len(results) == 1 else "s")
    overview = ""
    if videos:
        scope = "all videos" if len(videos) > 1 else "this run"
        overview = (
            '<section class="card run-overview">'
            + _summary(videos, colours, own_warnings)
            + _warning_box(shared_warnings, f"Check before trusting these labels ({scope})")
            + _settings_table(shared_settings, f"Settings ({scope})")
            + "</section>"
        )
    body = "".join(sections) if sections else '<p class="note">No videos were classified.</p>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        f"<title>{_e(title)}</title><style>{_CSS}{_zoom_rules()}{_fit_rules()}</style></head>\n"
        f'<body><main><header class="page-header"><h1>{_e(title)}</h1>'
        f'<p class="page-meta">{_e(count)} &middot; generated {_e(generated)} &middot; '
        f"yt8m {_e(__version__)}</p></header>\n{overview}\n{body}</main></body></html>\n"
    )


def resolve_report_path(path: str | os.PathLike) -> Path:
    """The file a report goes to: `path`, or `REPORT_NAME` inside it when it is a folder or ends with `/`.

    Checked before any work, so that a mistake is not found only once every video is classified.
    """
    text = os.fspath(path)
    if not text:
        raise Yt8mError("the report path is empty: give a file (report.html) or a folder")
    target = Path(text)
    if text.endswith(("/", os.sep)) or target.is_dir():
        target = target / REPORT_NAME
    if target.exists() and not target.is_file():
        raise Yt8mError(f"{target}: exists and is not a regular file; give a report file or a folder")
    return target


def write_report(results: Sequence[ClassificationResult], path: str | os.PathLike) -> Path:
    """Write the report of one run to `path` (see `resolve_report_path`; temporary name, renamed when
    complete); returns the file written."""
    target = resolve_report_path(path)
    page = render_report(list(results), base_dir=target.parent)
    try:
        return write_text(target, page)
    except OSError as error:
        raise Yt8mError(f"{target}: cannot write the report: {error.strerror or error}") from None
