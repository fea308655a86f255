"""yt8m: raw videos to YouTube-8M features, records, classifiers and labels on TensorFlow 2."""

from yt8m.core import FeatureSpec, VideoFeatures, Yt8mError

__version__ = "0.1.0"

__all__ = ["FeatureSpec", "VideoFeatures", "Yt8mError", "__version__"]
