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


def _csv_classes(path: Path) -> list[int]:
    """The class ids a Class,Segments CSV lists (for the default whitelist's class count)."""
    from yt8m.classifier.segments import read_segment_csv

    return list(read_segment_csv(path))


def ensemble(
    inputs: list[Path] = typer.Argument(
        ..., help="Prediction sets: .npz from `yt8m predict --save-scores`, video-level predictions CSVs, or Class,Segments CSVs (fused by rank)."
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
    rated_data: Optional[str] = typer.Option(
        None, "--rated-data", help="Class,Segments inputs: labelled segment records the --search scores the fused --validation CSVs on."
    ),
    w0: Optional[float] = typer.Option(
        None, "--w0", help="Class,Segments inputs: place r weighs w0/(r+w0) (default: the 9th place's 3.7238, or the weights file's)."
    ),
) -> None:
    """Combine prediction sets by a weighted mean; search and save the weights on a validation set."""
    from yt8m.classifier.ensemble import run_ensemble

    values = None
    if weights is not None:
        try:
            values = [float(part) for part in weights.split(",") if part.strip()]
        except ValueError:
            raise Yt8mError(f"--weights must be comma-separated numbers, got {weights!r}") from None
    from yt8m.classifier.segment_ensemble import ensemble_segment_csvs, is_segment_csv

    if inputs and all(is_segment_csv(path) for path in inputs):  # rank fusion, as the 2019 9th place
        from yt8m.classifier.segments import resolve_segment_classes

        largest = max((c for path in inputs for c in _csv_classes(path)), default=0)
        fused = ensemble_segment_csvs(
            inputs, output, weights=values, weights_file=weights_file, w0=w0, search=search,
            validation=_paths(validation) if validation is not None else None, rated_data=rated_data,
            class_ids=resolve_segment_classes(segment_classes, num_classes or largest + 1),
            search_iterations=search_iterations, seed=seed, save_weights_to=save_weights, segment_max_pred=segment_max_pred,
        )
        say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
        if fused.search is not None:
            singles = ", ".join(f"{value:.4f}" for value in fused.search.single)
            say(
                f"searched weights {', '.join(f'{w:.3f}' for w in fused.weights)}, w0 {fused.w0:.3f}: segment_map "
                f"{fused.search.value:.4f} (equal weights {fused.search.equal_value:.4f}; each alone: {singles})"
            )
        if fused.weights_path is not None:
            say(f"saved weights to {fused.weights_path}")
        if fused.csv_path is not None:
            say(f"rank fusion of {len(inputs)} with weights {json.dumps([round(float(w), 4) for w in fused.weights])}, w0 {fused.w0:.4f} -> {fused.csv_path}")
        return
    result = run_ensemble(
        inputs,
        output,
        weights=values,
        weights_file=weights_file,
        search=search,
        validation=_paths(validation) if validation is not None else None,
        search_iterations=search_iterations,
        seed=seed,
        save_weights_to=save_weights,
        save_scores=save_scores,
        num_classes=num_classes,
        top_k=top_k,
        segment_classes=segment_classes,
        segment_max_pred=segment_max_pred,
    )
    say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    if result.search is not None:
        singles = ", ".join(f"{value:.4f}" for value in result.search.single)
        chosen = ", ".join(f"{w:.3f}" for w in result.weights)
        say(f"searched weights {chosen}: {result.search.metric} {result.search.value:.4f} (each alone: {singles})")
    if result.weights_path is not None:
        say(f"saved weights to {result.weights_path}")
    written = [str(p) for p in (result.csv_path, result.scores_path) if p is not None]
    if written:
        say(f"ensemble of {result.count} with weights {json.dumps([round(float(w), 4) for w in result.weights])} -> {', '.join(written)}")

