"""`yt8m ensemble`: weighted mean of several prediction sets, weights given, loaded or searched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from yt8m.app.console import console
from yt8m.core import Yt8mError


def _paths(text: str) -> list[Path]:
    return [Path(part.strip()) for part in text.split(",") if part.strip()]


def ensemble(
    inputs: list[Path] = typer.Argument(
        ..., help="Prediction sets: .npz from `yt8m predict --save-scores` or video-level predictions CSVs."
    ),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Ensemble predictions CSV (video or Class,Segments format, as the inputs)."
    ),
    weights: Optional[str] = typer.Option(None, "--weights", help="One weight per input, e.g. 0.7,0.3 (default: equal)."),
    weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="Reuse weights saved by --save-weights."),
    search: bool = typer.Option(
        False, "--search", help="Search the weights (Bayesian optimisation) on labelled validation scores."
    ),
    validation: Optional[str] = typer.Option(
        None, "--validation", help="Comma list of labelled validation .npz, one per input in the same order (default: the inputs)."
    ),
    search_iterations: int = typer.Option(30, "--search-iterations", min=1, help="Metric evaluations of the search."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search."),
    save_weights: Optional[Path] = typer.Option(None, "--save-weights", help="Write the chosen weights to this JSON."),
    save_scores: Optional[Path] = typer.Option(None, "--save-scores", help="Also save the ensemble's scores (.npz)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", min=1, help="Classes of CSV inputs (default: the largest label + 1)."),
    top_k: int = typer.Option(20, "--top-k", min=1, help="Label/score pairs per video in a video-level CSV."),
    segment_classes: Optional[Path] = typer.Option(
        None, "--segment-classes", help="Segment inputs: rated-class whitelist (default: official file for 3862 classes, else all)."
    ),
    segment_max_pred: int = typer.Option(100_000, "--segment-max-pred", min=1, help="Segments listed per class."),
) -> None:
    """Combine prediction sets by a weighted mean; search and save the weights on a validation set."""
    from yt8m.classifier import ensemble as ens
    from yt8m.classifier.segments import resolve_segment_classes

    if sum(x is not None and x is not False for x in (weights, weights_file, search or None)) > 1:
        raise Yt8mError("give at most one of --weights, --weights-file and --search")
    sets = ens.align([ens.load_prediction_set(path, num_classes) for path in inputs])
    reference = sets[0]
    classes = reference.predictions.shape[1]
    class_ids = resolve_segment_classes(segment_classes, classes) if reference.is_segments else None
    info: dict = {}
    if search:
        validation_sets = sets
        if validation is not None:
            paths = _paths(validation)
            if len(paths) != len(inputs):
                raise Yt8mError(f"--validation lists {len(paths)} files for {len(inputs)} inputs")
            validation_sets = [ens.load_prediction_set(path, num_classes) for path in paths]
        result = ens.search_weights(validation_sets, iterations=search_iterations, seed=seed, class_ids=class_ids)
        chosen = result.weights
        info = {"metric": result.metric, "value": result.value, "single": result.single, "method": "bayesian-optimisation"}
        singles = ", ".join(f"{value:.4f}" for value in result.single)
        console.print(
            f"searched weights {', '.join(f'{w:.3f}' for w in chosen)}: {result.metric} {result.value:.4f} "
            f"(each alone: {singles})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    elif weights_file is not None:
        chosen = ens.load_weights(weights_file, len(sets))
    elif weights is not None:
        try:
            values = [float(part) for part in weights.split(",") if part.strip()]
        except ValueError:
            raise Yt8mError(f"--weights must be comma-separated numbers, got {weights!r}") from None
        chosen = ens.check_weights(values, len(sets))
    else:
        chosen = ens.check_weights([1.0] * len(sets), len(sets))
    if save_weights is not None:
        path = ens.save_weights(save_weights, [str(p) for p in inputs], chosen, **info)
        console.print(f"saved weights to {path}", markup=False, highlight=False, soft_wrap=True)
    if output is None and save_scores is None:
        if not search and save_weights is None:
            raise Yt8mError("nothing to do: give -o/--output, --save-scores or --save-weights")
        return
    combined = ens.combine([s.predictions for s in sets], chosen)
    csv_path, scores_path = ens.write_outputs(
        reference, combined, output, top_k=top_k, class_ids=class_ids, max_pred=segment_max_pred, scores_path=save_scores
    )
    written = [str(p) for p in (csv_path, scores_path) if p is not None]
    console.print(
        f"ensemble of {len(sets)} with weights {json.dumps([round(float(w), 4) for w in chosen])} -> {', '.join(written)}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
