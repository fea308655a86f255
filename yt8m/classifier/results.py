"""What `classify` produces for one video: ranked labels, per-window labels, thumbnails, settings.

Plain dataclasses with numpy inside (no TensorFlow), so that the classifier fills them, the CLI
prints them as a table / JSON / CSV and the HTML report draws them, without any of these knowing
about the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

THUMBNAIL_HEIGHT = 144  # pixels: classify keeps thumbnails this high, the report shows them so


@dataclass
class LabelScore:
    """One class with its predicted score (a probability in [0, 1] for the YT8M models)."""

    index: int
    name: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": int(self.index), "name": str(self.name), "score": float(self.score)}


@dataclass
class SegmentPrediction:
    """The top labels of one time window of the video (5-second windows, best first)."""

    start_seconds: float
    end_seconds: float
    labels: list[LabelScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_seconds": float(self.start_seconds),
            "end_seconds": float(self.end_seconds),
            "labels": [label.to_dict() for label in self.labels],
        }


@dataclass
class ClassificationResult:
    """Everything `classify` found out about one video, plus how it was computed.

    `labels` holds the video-level top-k, best first; `segments` may be empty (no `--segments`);
    `thumbnails` holds one small RGB uint8 image per sampled frame (may be empty); `settings`
    names the model, weights, precision, feature spec...; `warnings` says what the user must know
    before trusting the labels (e.g. features made with random weights, a frame cap).

    `duration_seconds` is the span the sampled frames cover (`num_frames / fps`); `capped` says
    that `max_frames` cut the video, whose whole duration (as its container states it, None when
    unknown) is `source_duration_seconds`.
    """

    source: str
    video_id: str
    duration_seconds: float
    num_frames: int
    labels: list[LabelScore] = field(default_factory=list)
    segments: list[SegmentPrediction] = field(default_factory=list)
    thumbnails: list[np.ndarray] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    fps: float = 1.0  # frames sampled per second of video
    capped: bool = False
    source_duration_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (plain Python types only); thumbnails are left out, only counted."""
        return {
            "source": str(self.source),
            "video_id": str(self.video_id),
            "duration_seconds": float(self.duration_seconds),
            "num_frames": int(self.num_frames),
            "fps": float(self.fps),
            "capped": bool(self.capped),
            "source_duration_seconds": None if self.source_duration_seconds is None else float(self.source_duration_seconds),
            "labels": [label.to_dict() for label in self.labels],
            "segments": [segment.to_dict() for segment in self.segments],
            "num_thumbnails": len(self.thumbnails),
            "settings": {str(key): str(value) for key, value in self.settings.items()},
            "warnings": [str(warning) for warning in self.warnings],
        }
