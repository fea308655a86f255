"""Compact models (2018 first place, "next top GB model"): quantized weights, one-graph ensembles,
distillation, the EMA stage and size budgets, all as model bundles that eval, predict, classify and
export take unchanged.

Importing this package registers the bundle kinds `quantized`, `merged` and `ema-stage`.
"""

from yt8m.classifier.compact import distill, ema, merge, quantize, size  # noqa: F401  (registers the bundle kinds)
