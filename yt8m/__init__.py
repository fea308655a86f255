"""yt8m: raw videos to YouTube-8M features, records, classifiers and labels on TensorFlow 2.

The library in a few calls (see `yt8m.api`):

    import yt8m
    yt8m.extract(["videos/"], "features/videos.tfrecord")
    yt8m.train("features/*.tfrecord", "runs/nextvlad", "NeXtVLADModel", max_steps=1000)
    yt8m.evaluate("val/*.tfrecord", "runs/nextvlad")
    yt8m.predict("test/*.tfrecord", "runs/nextvlad", "predictions.csv")
    yt8m.export("runs/nextvlad", "saved_model")
    model = yt8m.load_model("runs/nextvlad")
    outcome = yt8m.classify(["clip.mp4"], model)

`import yt8m` stays free of TensorFlow (so `yt8m --help` is instant): the API functions load
`yt8m.api`, and with it TensorFlow, on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from yt8m.core import FeatureSpec, VideoFeatures, Yt8mError, __version__

if TYPE_CHECKING:
    from yt8m.api import classify, evaluate, export, extract, load_model, predict, train

API = ("classify", "evaluate", "export", "extract", "load_model", "predict", "train")
_API_MODULE = "yt8m.api"

__all__ = ["FeatureSpec", "VideoFeatures", "Yt8mError", "__version__", *API]


def __getattr__(name: str) -> Any:
    """The API functions, loaded from `yt8m.api` on first use (PEP 562)."""
    if name in API:
        return getattr(importlib.import_module(_API_MODULE), name)
    raise AttributeError(f"module 'yt8m' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API))
