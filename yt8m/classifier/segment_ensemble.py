"""Rank ensembles of `Class,Segments` CSVs and rank fusion of TTA shifts, as the 2019 9th place.

Reference: hughshaoqz/3rd-Youtube8M-TM `src/Ensemble.ipynb` (see `tta.py` for the fusion rule).
Their ensemble read one CSV per model (each already the rank fusion of its TTA shifts), fused
them with `weight_i * w0 / (r + w0)` per place r, and chose w0 and the weights by Bayesian
optimisation of the segment MAP of the fused out-of-fold (validation) CSVs against the
validation records' rated segments; the chosen parameters were then applied to the test CSVs.
yt8m does the same with its Gaussian-process search (`ensemble.expected_improvement_rounds`):
weights on the simplex (their scale is irrelevant to a ranking) and w0 in (0, 10]. (Their search
objective `run_ensemble_bayesian` builds `sub_weight = [w1 + ... + w9]`, one summed element, a
slip; their final blend `submission_generate` weights each CSV by its own w_i, and so does the
yt8m search.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yt8m.classifier.ensemble import (
    INITIAL_RANDOM_POINTS,
    check_weights,
    expected_improvement_rounds,
    load_weights,
    save_weights,
)
from yt8m.classifier.metrics import SEGMENT_TOP_K
from yt8m.classifier.segments import rated_segments, read_segment_csv
from yt8m.classifier.tta import (
    SEGMENT_MAX_PRED,
    TTA_W0,
    W0_BOUNDS,
    W0_MIN,
    RankFusion,
    position_weights,
    segment_map_of_ranking,
    write_ranking_csv,
)
from yt8m.core import Yt8mError

DEFAULT_RANK_SEARCH_ITERATIONS = 30


def is_segment_csv(path: str | os.PathLike) -> bool:
    """Whether a file starts with the `Class,Segments` header."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.readline().strip() == "Class,Segments"
    except OSError:
        return False


def load_rankings(paths: Sequence[str | os.PathLike]) -> list[dict[int, list[str]]]:
    return [read_segment_csv(path) for path in paths]


@dataclass
class RankSearchResult:
    weights: np.ndarray  # on the simplex, one per CSV
    w0: float
    value: float  # segment MAP of the fused validation CSVs
    equal_value: float  # with equal weights and the TTA w0
    single: list[float]  # each CSV alone
    history: list[tuple[list[float], float]]  # (weights + [w0], value)


def search_rank_weights(
    validation: Sequence[Mapping[int, Sequence[str]]],
    rated: Mapping[tuple[str, int], bool],
    *,
    iterations: int = DEFAULT_RANK_SEARCH_ITERATIONS,
    seed: int = 0,
    class_ids: Iterable[int] | None = None,
    top_k: int = SEGMENT_TOP_K,
    max_pred: int = SEGMENT_MAX_PRED,
) -> RankSearchResult:
    """Bayesian optimisation of the rank-fusion weights and w0 on out-of-fold (validation) rankings.

    The design starts with equal weights at the TTA w0, every single ranking and a few random
    points; each later round evaluates the candidate with the highest expected improvement.
    """
    if not rated:
        raise Yt8mError("searching rank-fusion weights needs rated segments (labelled validation records)")
    fusion = RankFusion(validation, max_pred)
    count = fusion.count
    allowed = None if class_ids is None else list(class_ids)
    low, high = max(W0_BOUNDS[0], W0_MIN), W0_BOUNDS[1]
    rng = np.random.default_rng(seed)

    def point(weights: np.ndarray, w0: float) -> np.ndarray:
        return np.concatenate([weights, [(w0 - low) / (high - low)]])

    history: list[tuple[np.ndarray, float]] = []

    def evaluate(x: np.ndarray) -> None:
        weights, w0 = x[:count], low + float(x[count]) * (high - low)
        value = segment_map_of_ranking(fusion.fuse(weights, w0), rated, class_ids=allowed, top_k=top_k)
        history.append((x, value))

    def sample(size: int) -> np.ndarray:
        return np.concatenate([rng.dirichlet(np.ones(count), size=size), rng.uniform(0.0, 1.0, size=(size, 1))], axis=1)

    evaluate(point(np.full(count, 1.0 / count), TTA_W0))
    for vertex in np.eye(count):
        evaluate(point(vertex, TTA_W0))
    for x in sample(INITIAL_RANDOM_POINTS):
        evaluate(x)
    equal_value = history[0][1]
    single = [value for _, value in history[1 : 1 + count]]
    expected_improvement_rounds(history, evaluate, sample, iterations - len(history), seed)
    best_x, best_value = max(history, key=lambda item: item[1])
    return RankSearchResult(
        weights=np.asarray(best_x[:count], dtype=np.float64),
        w0=float(low + best_x[count] * (high - low)),
        value=float(best_value),
        equal_value=float(equal_value),
        single=single,
        history=[(list(map(float, x[:count])) + [float(low + x[count] * (high - low))], v) for x, v in history],
    )


def rated_pairs(pattern: str, class_ids: Iterable[int] | None = None) -> dict[tuple[str, int], bool]:
    """{(segment id, class): present} of labelled segment records, restricted to `class_ids`."""
    rated = rated_segments(pattern)
    if class_ids is None:
        return rated
    allowed = {int(c) for c in class_ids}
    return {key: value for key, value in rated.items() if key[1] in allowed}


@dataclass
class RankEnsembleOutcome:
    weights: np.ndarray
    w0: float
    csv_path: Path | None
    weights_path: Path | None = None
    search: RankSearchResult | None = None


def ensemble_segment_csvs(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike | None,
    *,
    weights: Sequence[float] | None = None,
    weights_file: str | os.PathLike | None = None,
    w0: float | None = None,
    search: bool = False,
    validation: Sequence[str | os.PathLike] | None = None,
    rated_data: str | None = None,
    class_ids: Iterable[int] | None = None,
    search_iterations: int = DEFAULT_RANK_SEARCH_ITERATIONS,
    seed: int = 0,
    save_weights_to: str | os.PathLike | None = None,
    segment_max_pred: int = SEGMENT_MAX_PRED,
    top_k: int = SEGMENT_TOP_K,
) -> RankEnsembleOutcome:
    """Fuse `Class,Segments` CSVs by rank: weights given, loaded (with their w0), equal, or searched
    with w0 on the out-of-fold `validation` CSVs (default: the inputs) against the rated segments of
    the labelled records `rated_data`. `w0` defaults to the 9th place's TTA value."""
    if sum(1 for given in (weights is not None, weights_file is not None, search) if given) > 1:
        raise Yt8mError("give at most one of `weights`, `weights_file` and `search`")
    found = None
    info: dict = {}
    if search:
        if rated_data is None:
            raise Yt8mError("searching rank-fusion weights needs `rated_data` (labelled validation records)")
        oof = list(validation) if validation is not None else list(inputs)
        if len(oof) != len(inputs):
            raise Yt8mError(f"`validation` lists {len(oof)} CSVs for {len(inputs)} inputs")
        found = search_rank_weights(
            load_rankings(oof), rated_pairs(rated_data, class_ids), iterations=search_iterations, seed=seed,
            class_ids=class_ids, top_k=top_k, max_pred=segment_max_pred,
        )
        chosen, w0 = found.weights, found.w0
        info = {"w0": w0, "metric": "segment_map", "value": found.value, "single": found.single,
                "equal_weights_value": found.equal_value, "method": "bayesian-optimisation, rank fusion"}
    elif weights_file is not None:
        chosen = load_weights(weights_file, len(inputs))
        if w0 is None:
            w0 = _saved_w0(weights_file)
    else:
        chosen = check_weights(list(weights) if weights is not None else [1.0] * len(inputs), len(inputs))
    w0 = TTA_W0 if w0 is None else float(w0)
    position_weights(1, w0)  # `w0` must be > 0
    if output is None and not search and save_weights_to is None:
        raise Yt8mError("nothing to do: give `output` or `save_weights`")
    result = RankEnsembleOutcome(np.asarray(chosen), w0, None, search=found)
    if save_weights_to is not None:
        result.weights_path = save_weights(save_weights_to, [str(p) for p in inputs], chosen, **{"w0": w0, **info})
    if output is not None:
        fused = RankFusion(load_rankings(inputs), segment_max_pred).fuse(chosen, w0)
        result.csv_path = write_ranking_csv(output, fused)
    return result


def _saved_w0(path: str | os.PathLike) -> float | None:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8")).get("w0")
    except (OSError, ValueError, AttributeError):
        return None
    return None if value is None else float(value)
