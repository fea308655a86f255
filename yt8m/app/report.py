"""The HTML report of a `classify` run: one self-contained page for all the videos of the run.

Per video: a header (file, duration, frames), the warnings as a banner, a strip of thumbnails
(one per second), the video-level labels as bars, a timeline of the segment labels and the
settings used. Everything is inline (CSS, JPEG thumbnails as data URIs), no script and no
external reference, and a Content-Security-Policy forbids loading anything else, so the page can
be mailed or archived as one file and opened offline.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from yt8m import __version__
from yt8m.classifier.results import ClassificationResult, LabelScore, SegmentPrediction
from yt8m.core import Yt8mError

THUMB_MAX_HEIGHT = 72  # pixels; larger thumbnails are shrunk (keeping aspect) before encoding
THUMB_JPEG_QUALITY = 80
SEGMENT_MIN_WIDTH_REM = 4.5  # long videos scroll sideways instead of squeezing their windows
TIMELINE_TOOLTIP_LABELS = 3  # labels listed in a segment's tooltip
# Modest, distinguishable fills for the segment timeline; the same label keeps the same colour
# across all the videos of one report (assigned in order of first appearance).
SEGMENT_PALETTE: tuple[str, ...] = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#2f6690",
    "#8cd17d",
)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)

_CSS = """
:root {
  --bg: #f6f7f9; --card: #ffffff; --text: #1f2328; --muted: #59636e; --border: #d8dee4;
  --bar: #3b82c4; --track: #e8edf2; --warn-bg: #fff4d6; --warn-border: #d4a017; --warn-text: #5c4400;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #16191d; --card: #1f2328; --text: #e6e8eb; --muted: #9aa4ae; --border: #363c44;
    --bar: #5a9fdc; --track: #2c323a; --warn-bg: #3d3210; --warn-border: #c99a1e; --warn-text: #f5deb0;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--text); line-height: 1.45;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans",
    "Liberation Sans", sans-serif;
}
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 0; overflow-wrap: anywhere; }
h3 { font-size: .95rem; margin: 1.25rem 0 .5rem; color: var(--muted); font-weight: 600;
  text-transform: uppercase; letter-spacing: .04em; }
.page-meta, .note { color: var(--muted); font-size: .9rem; margin: 0; }
nav.toc { margin: .75rem 0 0; font-size: .9rem; }
nav.toc a { color: var(--bar); margin-right: 1rem; }
.video { background: var(--card); border: 1px solid var(--border); border-radius: 10px;
  padding: 1.25rem 1.25rem 1rem; margin-top: 1.25rem; }
.facts { display: flex; flex-wrap: wrap; gap: .25rem 1.5rem; margin: .4rem 0 0; font-size: .9rem; }
.facts div { display: flex; gap: .4rem; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.warning { background: var(--warn-bg); border: 1px solid var(--warn-border);
  border-left-width: 6px; color: var(--warn-text); border-radius: 6px;
  padding: .6rem .9rem; margin: 1rem 0 0; }
.warning strong { display: block; }
.warning ul { margin: .3rem 0 0; padding-left: 1.2rem; }
.thumbs { display: flex; flex-wrap: wrap; gap: 6px; max-height: 24rem; overflow-y: auto; }
.frame { margin: 0; flex: 0 0 auto; text-align: center; }
.thumb { display: block; height: 54px; width: auto; border-radius: 4px; border: 1px solid var(--border); }
.frame figcaption { font-size: .75rem; color: var(--muted); font-variant-numeric: tabular-nums; }
.labels { list-style: none; margin: 0; padding: 0; }
.label-bar { display: grid; grid-template-columns: minmax(7rem, 16rem) 1fr 3.5rem;
  align-items: center; gap: .75rem; padding: .15rem 0; }
.label-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bar { display: block; height: .85rem; background: var(--track); border-radius: 3px; overflow: hidden; }
.fill { display: block; height: 100%; background: var(--bar); border-radius: 3px; }
.label-score { text-align: right; font-variant-numeric: tabular-nums; font-size: .9rem; }
.timeline-scroll { overflow-x: auto; padding-bottom: 4px; }
.timeline { position: relative; height: 3.1rem; }
.segment { position: absolute; top: 0; bottom: 0; border-right: 2px solid var(--card);
  border-radius: 4px; padding: .25rem .4rem; overflow: hidden; font-size: .8rem; line-height: 1.25; }
.segment span { display: block; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.segment .seg-score { opacity: .85; font-variant-numeric: tabular-nums; }
.axis { position: relative; height: 1.2rem; font-size: .72rem; color: var(--muted); }
.axis span { position: absolute; top: 0; transform: translateX(-50%); font-variant-numeric: tabular-nums; }
.axis span:first-child { transform: none; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: .3rem 1rem; padding: 0;
  margin: .4rem 0 0; font-size: .85rem; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px;
  margin-right: .35rem; vertical-align: -1px; }
table.settings { border-collapse: collapse; width: 100%; font-size: .9rem; }
table.settings th, table.settings td { text-align: left; vertical-align: top; padding: .3rem .5rem;
  border-top: 1px solid var(--border); }
table.settings th { width: 14rem; color: var(--muted); font-weight: 500; }
table.settings td { overflow-wrap: anywhere; font-family: ui-monospace, SFMono-Regular, Menlo,
  Consolas, "Liberation Mono", monospace; font-size: .85rem; }
@media (max-width: 640px) {
  .label-bar { grid-template-columns: 1fr 3.5rem; }
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
    return f"{value * 100:.3f}".rstrip("0").rstrip(".") + "%"


def _text_colour(background: str) -> str:
    """Black or white text, whichever reads better on the given `#rrggbb` fill."""
    red, green, blue = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    return "#111111" if luminance > 150 else "#ffffff"


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


class _Colours:
    """Assigns palette colours to labels in order of first appearance, stable for the whole page."""

    def __init__(self) -> None:
        self._by_index: dict[int, str] = {}

    def __call__(self, label: LabelScore) -> str:
        if label.index not in self._by_index:
            self._by_index[label.index] = SEGMENT_PALETTE[len(self._by_index) % len(SEGMENT_PALETTE)]
        return self._by_index[label.index]


def _header(result: ClassificationResult) -> str:
    name = os.path.basename(result.source.rstrip("/\\")) or result.video_id or "video"
    facts = [
        ("file", result.source),
        ("video id", result.video_id),
        ("duration", f"{result.duration_seconds:.1f} s ({_clock(result.duration_seconds)})"),
        ("frames", f"{result.num_frames}"),
    ]
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    return f'<header><h2 title="{_e(result.source)}">{_e(name)}</h2><dl class="facts">{items}</dl></header>'


def _warnings(result: ClassificationResult) -> str:
    if not result.warnings:
        return ""
    items = "".join(f"<li>{_e(w)}</li>" for w in result.warnings)
    return (
        '<div class="warning" role="alert"><strong>&#9888; Check before trusting these labels</strong>'
        f"<ul>{items}</ul></div>"
    )


def _thumbnails(result: ClassificationResult) -> str:
    if not result.thumbnails:
        return ""
    figures = []
    for second, image in enumerate(result.thumbnails):
        uri = encode_thumbnail(image)
        figures.append(
            f'<figure class="frame"><img class="thumb" src="{uri}" alt="frame at {second} s">'
            f"<figcaption>{second} s</figcaption></figure>"
        )
    return f'<h3>Frames, one per second</h3><div class="thumbs">{"".join(figures)}</div>'


def _labels(result: ClassificationResult) -> str:
    if not result.labels:
        return '<h3>Video-level labels</h3><p class="note">No labels.</p>'
    rows = []
    for label in result.labels:
        width = _percent(min(max(float(label.score), 0.0), 1.0))
        rows.append(
            f'<li class="label-bar"><span class="label-name" title="{_e(label.name)} (class {label.index})">'
            f"{_e(label.name)}</span>"
            f'<span class="bar"><span class="fill" style="width: {width}"></span></span>'
            f'<span class="label-score">{label.score:.3f}</span></li>'
        )
    return f'<h3>Video-level labels</h3><ol class="labels">{"".join(rows)}</ol>'


def _segment_tooltip(segment: SegmentPrediction) -> str:
    lines = [f"{_clock(segment.start_seconds)}\u2013{_clock(segment.end_seconds)}"]
    for rank, label in enumerate(segment.labels[:TIMELINE_TOOLTIP_LABELS], start=1):
        lines.append(f"{rank}. {label.name} {label.score:.3f}")
    return "\n".join(lines)


def _timeline(result: ClassificationResult, colours: _Colours) -> str:
    if not result.segments:
        return '<h3>Segments</h3><p class="note">No segment predictions in this run.</p>'
    end = max([float(result.duration_seconds)] + [float(s.end_seconds) for s in result.segments])
    end = end if end > 0 else 1.0
    blocks, legend = [], {}
    for segment in result.segments:
        left = _percent(max(0.0, segment.start_seconds) / end)
        width = _percent(max(0.0, segment.end_seconds - segment.start_seconds) / end)
        tooltip = _e(_segment_tooltip(segment))
        if segment.labels:
            top = segment.labels[0]
            fill = colours(top)
            legend.setdefault(top.index, (top.name, fill))
            content = (
                f'<span class="seg-name">{_e(top.name)}</span>'
                f'<span class="seg-score">{top.score:.2f}</span>'
            )
            style = f"left: {left}; width: {width}; background: {fill}; color: {_text_colour(fill)}"
        else:
            content = '<span class="seg-name">&#8212;</span>'
            style = f"left: {left}; width: {width}; background: var(--track)"
        blocks.append(f'<div class="segment" style="{style}" title="{tooltip}">{content}</div>')
    boundaries = sorted({0.0, *(float(s.start_seconds) for s in result.segments)})
    ticks = "".join(f'<span style="left: {_percent(t / end)}">{_clock(t)}</span>' for t in boundaries)
    swatches = "".join(
        f'<li class="legend-item"><span class="swatch" style="background: {fill}"></span>{_e(name)}</li>'
        for name, fill in legend.values()
    )
    min_width = f"{SEGMENT_MIN_WIDTH_REM * len(result.segments):.1f}rem"
    return (
        f"<h3>Segments, top label per window</h3>"
        f'<div class="timeline-scroll"><div style="min-width: {min_width}">'
        f'<div class="timeline">{"".join(blocks)}</div><div class="axis">{ticks}</div></div></div>'
        f'<ul class="legend">{swatches}</ul>'
    )


def _settings(result: ClassificationResult) -> str:
    if not result.settings:
        return ""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in result.settings.items())
    return f'<h3>Settings</h3><table class="settings"><tbody>{rows}</tbody></table>'


def render_report(results: Sequence[ClassificationResult], title: str = "yt8m classification report") -> str:
    """The whole HTML page as a string (see `write_report`)."""
    colours = _Colours()
    sections = []
    for number, result in enumerate(results):
        sections.append(
            f'<section class="video" id="video-{number}">'
            + _header(result)
            + _warnings(result)
            + _thumbnails(result)
            + _labels(result)
            + _timeline(result, colours)
            + _settings(result)
            + "</section>"
        )
    toc = ""
    if len(results) > 1:
        links = "".join(
            f'<a href="#video-{n}">{_e(os.path.basename(r.source) or r.video_id)}</a>'
            for n, r in enumerate(results)
        )
        toc = f'<nav class="toc">{links}</nav>'
    generated = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    count = f"{len(results)} video" + ("" if len(results) == 1 else "s")
    body = "".join(sections) if sections else '<p class="note">No videos were classified.</p>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n"
        f'<body><main><header class="page-header"><h1>{_e(title)}</h1>'
        f'<p class="page-meta">{_e(count)} &middot; generated {_e(generated)} &middot; '
        f"yt8m {_e(__version__)}</p>"
        f"{toc}</header>\n{body}</main></body></html>\n"
    )


def write_report(results: Sequence[ClassificationResult], path: str | os.PathLike) -> Path:
    """Write the report of one run to `path` (temporary name, renamed when complete); returns the path."""
    target = Path(path)
    page = render_report(list(results))
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise Yt8mError(f"{target}: cannot write the report: {error.strerror or error}") from None
    return target
