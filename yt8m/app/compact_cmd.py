"""`yt8m quantize`, `yt8m merge`, `yt8m distill-data`, `yt8m size`: compact models (the 2018 1 GB limit).

Each parses its options, calls `yt8m.classifier.compact` and prints. The library (and with it
TensorFlow) is imported inside the commands only, so `yt8m --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from yt8m.app.console import console
from yt8m.core import Yt8mError

METHOD_CHOICES = "uniform8, float16, kmeans, quantile, float32"


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _numbers(text: Optional[str], option: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(part) for part in text.replace(" ", ",").split(",") if part.strip()]
    except ValueError:
        raise Yt8mError(f"{option} must be comma-separated numbers, got {text!r}") from None


def quantize(
    train_dir: Path = typer.Option(..., "--train-dir", help="A trained bundle (train dir) to quantize."),
    output: Path = typer.Option(..., "-o", "--output", help="Directory of the quantized bundle to create."),
    method: str = typer.Option("uniform8", "--method", help=f"How the weights are stored: {METHOD_CHOICES}."),
    min_elements: int = typer.Option(
        17_000, "--min-elements", min=0, help="Only variables with more elements are quantized (the seed's 17000)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier quantized bundle at OUTPUT."),
    eval_data: Optional[str] = typer.Option(
        None, "--eval-data", help="Labelled TFRecords: also report the GAP of the source and of the result."
    ),
) -> None:
    """Quantize a trained model's weights (codes + codebook per large variable) into a new bundle."""
    from yt8m.classifier.compact.quantize import quantize_bundle
    from yt8m.classifier.compact.size import format_size, size_report

    result = quantize_bundle(train_dir, output, method, min_elements=min_elements, overwrite=overwrite)
    source, made = size_report(train_dir), size_report(output)
    _say(
        f"quantized {made.model} (step {result.step}) with {result.method}: {result.num_transformed} of "
        f"{result.num_variables} variables transformed, {result.parameters:,} parameters"
    )
    _say(f"bytes on disk: {format_size(made.total_bytes)} (source {format_size(source.total_bytes)}, with optimizer state)")
    if eval_data is not None:
        from yt8m.classifier.evaluation import evaluate

        before = evaluate(eval_data, train_dir, write_summaries=False)["gap"]
        after = evaluate(eval_data, output, write_summaries=False)["gap"]
        _say(f"GAP {before:.4f} -> {after:.4f} ({after - before:+.4f})")
    _say(f"wrote {output}")


def merge(
    models: list[Path] = typer.Argument(..., help="2 or more bundles (trained, quantized or merged)."),
    output: Path = typer.Option(..., "-o", "--output", help="Directory of the merged bundle to create."),
    weights: Optional[str] = typer.Option(None, "--weights", help="One weight per model, e.g. 0.6,0.4 (default: equal; normalised to sum 1)."),
    export: bool = typer.Option(True, "--export/--no-export", help="Also write the SavedModel to OUTPUT/export."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier merged bundle at OUTPUT."),
    max_size: Optional[str] = typer.Option(None, "--max-size", help="Refuse a SavedModel larger than this (e.g. 1GB)."),
) -> None:
    """Merge bundles into ONE bundle and ONE SavedModel whose scores are the weighted mean of theirs."""
    from yt8m.classifier.compact.merge import merge as merge_bundles
    from yt8m.classifier.compact.size import format_size, size_report

    if max_size is not None and not export:
        raise Yt8mError("--max-size applies to the SavedModel: drop --no-export")
    result = merge_bundles(
        models, output, _numbers(weights, "--weights"), export=export, overwrite=overwrite, max_size=max_size
    )
    for entry in result.members:
        _say(f"  {entry['path']}: {entry['model']} ({entry['method']}) weight {entry['weight']:.4f} from {entry['source']}")
    if result.export_dir is not None:
        _say(f"SavedModel {result.export_dir}: {format_size(size_report(result.export_dir).total_bytes)}")
    _say(f"wrote {result.out_dir}")


def distill_data(
    input_data: str = typer.Option(..., "--input-data", help="TFRecord files to copy: a path, directory, glob or comma list."),
    teachers: list[Path] = typer.Option(..., "--teacher", help="A teacher bundle (repeat for an ensemble)."),
    output: Path = typer.Option(..., "-o", "--output", help="Directory of the distillation set (one file per input file)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Teacher weights, e.g. 0.5,0.5 (default: equal)."),
    top_k: int = typer.Option(100, "--top-k", min=1, help="Teacher classes kept per video (float16 probabilities)."),
    batch_size: int = typer.Option(128, "--batch-size", min=1, help="Videos per teacher batch."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files of an earlier distillation set."),
) -> None:
    """Write a distillation set: the records with the teachers' top-k probabilities in their context."""
    from yt8m.classifier.compact.distill import write_distill_data
    from yt8m.classifier.compact.size import format_size

    result = write_distill_data(
        input_data, teachers, output, weights=_numbers(weights, "--weights"), top_k=top_k, batch_size=batch_size, overwrite=overwrite
    )
    _say(
        f"wrote {result.num_videos} videos to {len(result.files)} files in {output}: top {result.top_k} teacher "
        f"classes add {format_size(result.bytes_added)} (full float32 score vectors: {format_size(result.full_vector_bytes)})"
    )
    _say("train on it with `yt8m train --distill-from records --distill-lambda 0.5`")


def size(
    path: Path = typer.Argument(..., help="A bundle (train dir, quantized or merged) or a SavedModel export."),
    max_size: Optional[str] = typer.Option(None, "--max-size", help="Budget, e.g. 1GB (10^9 bytes) or 1GiB; exit 1 when over it."),
    top: int = typer.Option(10, "--top", min=1, help="Parts listed, largest first."),
) -> None:
    """Size report: parameters and bytes on disk per variable group, total against a budget."""
    from rich.table import Table

    from yt8m.classifier.compact.size import describe, format_size, size_report

    report = size_report(path, max_size)
    table = Table(title=f"{path}: {report.kind} {report.model}", title_justify="left")
    for column in ("part", "parameters", "bytes"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for name, parameters, nbytes in describe(report.parts)[:top]:
        table.add_row(name, f"{parameters:,}" if parameters else "", format_size(nbytes))
    console.print(table)
    budget = f" of {format_size(report.budget)} ({report.total_bytes / report.budget:.1%})" if report.budget else ""
    _say(f"total {format_size(report.total_bytes)}{budget}, {report.parameters:,} parameters")
    report.check_budget()
