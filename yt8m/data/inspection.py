"""Summaries of YT8M record files: what `yt8m inspect` shows, usable from Python too."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from yt8m.data.records import iterate_raw_records, list_record_files, parse_record
from yt8m.core import WEIGHTS_RANDOM, Yt8mError


@dataclass
class RecordSummary:
    """Counts over a set of record files; `errors` holds one line per bad file."""

    files: list[str] = field(default_factory=list)
    videos: int = 0
    frame_level: int = 0
    video_level: int = 0
    frames: list[int] = field(default_factory=list)
    label_counts: Counter = field(default_factory=Counter)
    videos_without_labels: int = 0
    videos_with_segments: int = 0
    segment_count: int = 0
    segment_positive: int = 0
    segment_label_counts: Counter = field(default_factory=Counter)
    random_weight_videos: int = 0
    not_yt8m_compatible: int = 0
    audio_missing: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def min_frames(self) -> int:
        return min(self.frames) if self.frames else 0

    @property
    def max_frames(self) -> int:
        return max(self.frames) if self.frames else 0

    @property
    def mean_frames(self) -> float:
        return sum(self.frames) / len(self.frames) if self.frames else 0.0

    def to_dict(self, names: Callable[[int], str] | None = None, top: int = 20) -> dict[str, Any]:
        def label_rows(counter: Counter) -> list[dict[str, Any]]:
            return [
                {"label": label, "name": names(label) if names else None, "videos": count}
                for label, count in counter.most_common(top)
            ]

        return {
            "files": self.files,
            "videos": self.videos,
            "frame_level_records": self.frame_level,
            "video_level_records": self.video_level,
            "frames": {"min": self.min_frames, "mean": round(self.mean_frames, 2), "max": self.max_frames},
            "distinct_labels": len(self.label_counts),
            "videos_without_labels": self.videos_without_labels,
            "top_labels": label_rows(self.label_counts),
            "segments": {
                "videos_with_segments": self.videos_with_segments,
                "rated_segments": self.segment_count,
                "positive": self.segment_positive,
                "top_segment_labels": label_rows(self.segment_label_counts),
            },
            "random_weight_videos": self.random_weight_videos,
            "not_yt8m_compatible": self.not_yt8m_compatible,
            "audio_missing": self.audio_missing,
            "errors": self.errors,
        }


def summarize_records(patterns: str | os.PathLike | Sequence[str | os.PathLike]) -> RecordSummary:
    """Read every record matching `patterns` and count videos, frames, labels and segments.

    A bad file (corrupt, truncated, malformed record) adds one line to `errors` and the other
    files are still summarised; a pattern that matches nothing raises `Yt8mError`.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    summary = RecordSummary(files=[path for pattern in patterns for path in list_record_files(pattern)])
    for path in summary.files:
        try:
            for index, data in enumerate(iterate_raw_records(path)):
                video = parse_record(data, source=path, index=index)
                _count(summary, video)
        except Yt8mError as error:
            summary.errors.append(str(error))
    return summary


def _count(summary: RecordSummary, video) -> None:
    summary.videos += 1
    if video.num_frames or video.mean_rgb is None:
        summary.frame_level += 1
        summary.frames.append(video.num_frames)
    else:
        summary.video_level += 1
    summary.label_counts.update(set(video.labels))
    if not video.labels:
        summary.videos_without_labels += 1
    if video.has_segments:
        summary.videos_with_segments += 1
        summary.segment_count += len(video.segment_labels)
        summary.segment_positive += sum(1 for score in video.segment_scores if score > 0)
        summary.segment_label_counts.update(video.segment_labels)
    extras = video.extras
    if extras.get("weights") == WEIGHTS_RANDOM:
        summary.random_weight_videos += 1
    if "yt8m_compatible" in extras and not int(extras["yt8m_compatible"]):
        summary.not_yt8m_compatible += 1
    if int(extras.get("audio_missing", 0) or 0):
        summary.audio_missing += 1
