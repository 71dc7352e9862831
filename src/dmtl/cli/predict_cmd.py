"""``dmtl predict MODEL INPUTS...``: predictions for a manifest, an array, photos or videos.

A manifest (CSV/Parquet), a ``.npy`` array, or a folder of images for a model not
trained on faces give one row per sample, in the manifest's column naming
(:mod:`dmtl.inference.predict`). Photos, videos and folders of them give one row per
face per frame (:mod:`dmtl.inference.faces`), faces detected first with ``--faces``
(the default for a model whose card records a face crop recipe).

Registered in ``dmtl.cli`` as ``app.command("predict")(predict)``; torch and the model
are imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from dmtl.cli.errors import console, handle_errors, quiet_lightning, warnings_as_lines
from dmtl.cli.options import Overwrite
from dmtl.cli.outputs import check_output_file, check_output_folder
from dmtl.errors import ConfigError

if TYPE_CHECKING:
    from dmtl.inference.runtime import Predictor as Model


ModelArg = Annotated[
    Path,
    typer.Argument(
        help="Checkpoint file, run folder, study folder (its recommended models), or a model "
        "written by 'dmtl export' "
        "(.onnx, run with onnxruntime; TorchScript .pt)."
    ),
]
InputsArg = Annotated[
    list[Path],
    typer.Argument(
        help="A manifest (CSV/Parquet), a .npy array, or photos, videos (mp4, avi, mkv) "
        "and folders of them."
    ),
]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Predictions: .csv or .parquet.")]
RootOpt = Annotated[
    Path | None, typer.Option(help="Root of a manifest's image paths (default: its folder).")
]
ArrayOpt = Annotated[
    Path | None, typer.Option(help="The .npy array an 'index' manifest points into.")
]
OutsideOpt = Annotated[
    bool, typer.Option(help="Accept manifest image paths that are absolute or leave the root.")
]
FacesOpt = Annotated[
    bool | None,
    typer.Option(
        "--faces/--no-faces",
        help="Detect faces and predict each (default: on for a model trained on face crops, "
        "as its card says).",
    ),
]
DetectorOpt = Annotated[
    str, typer.Option(help="Face detector: auto, haar, lbp, yunet (docs/faces.md).")
]
DetectorOptionOpt = Annotated[
    list[str] | None,
    typer.Option(help="A detector option KEY=VALUE (repeatable), e.g. max_side=480."),
]
EveryOpt = Annotated[int, typer.Option(help="Predict every N-th video frame.")]
BatchOpt = Annotated[int, typer.Option(help="Faces per model call.")]
MaxFacesOpt = Annotated[
    int | None, typer.Option(help="At most this many faces per frame (the largest).")
]
SmoothOpt = Annotated[
    float | None, typer.Option(help="Smooth each face track: EMA factor in (0, 1] (1 = none).")
]
PlotsOpt = Annotated[
    Path | None,
    typer.Option(help="Folder for one PNG per face track: probabilities over time."),
]
AnnotateOpt = Annotated[
    Path | None,
    typer.Option(help="Folder for the photos and videos with boxes and top labels."),
]


@handle_errors
def predict(
    checkpoint: ModelArg,
    inputs: InputsArg,
    output: OutputOpt = Path("predictions.csv"),
    root: RootOpt = None,
    array: ArrayOpt = None,
    allow_outside_root: OutsideOpt = False,
    faces: FacesOpt = None,
    detector: DetectorOpt = "auto",
    detector_option: DetectorOptionOpt = None,
    every: EveryOpt = 1,
    batch_size: BatchOpt = 32,
    max_faces: MaxFacesOpt = None,
    smooth: SmoothOpt = None,
    plots: PlotsOpt = None,
    annotate: AnnotateOpt = None,
    overwrite: Overwrite = False,
) -> None:
    """Per-task probabilities and decisions: per sample of a manifest, or per face per frame."""
    from dmtl.cli.app import _resolve_checkpoint

    check_output_file(output, overwrite)
    for folder, option in ((plots, "--plots"), (annotate, "--annotate")):
        if folder is not None:
            check_output_folder(folder, option)
    study = _study_models(checkpoint)  # refused before torch is imported
    model_file = None if study else _resolve_checkpoint(checkpoint)

    from dmtl.inference.runtime import CombinedPredictor, load_predictor

    with quiet_lightning():
        if study:
            parts, order = study
            model: Model = CombinedPredictor(
                [(load_predictor(path), tasks) for path, tasks in parts], order)
            for path, tasks in parts:  # one line each, paths whole (never wrapped)
                console.print(f"{', '.join(tasks)}: {escape(str(path))}", soft_wrap=True)
        else:
            assert model_file is not None
            model = load_predictor(model_file)
        if _is_manifest(inputs, faces, model):
            count = _predict_manifest(model, inputs, output, root, array, allow_outside_root)
            console.print(f"{count} predictions written to [bold]{escape(str(output))}[/]")
            return
        if root is not None or array is not None:
            raise ConfigError([("--root/--array", "apply to a manifest input only")])
        _predict_media(
            model, inputs, output, faces, detector, detector_option, every, batch_size,
            max_faces, smooth, plots, annotate, overwrite,
        )


def _study_models(folder: Path) -> tuple[list[tuple[Path, list[str]]], list[str]] | None:
    """A study folder's recommended models (seed: the study's first), each with the tasks it
    serves, and the tasks in order; ``None`` if ``folder`` is not a study folder."""
    if not (folder.is_dir() and (folder / "results.json").is_file()
            and not (folder / "checkpoints").exists()):
        return None
    from dmtl.cli.app import _resolve_checkpoint
    from dmtl.study.recommend import recommended_runs
    from dmtl.study.results import load_results

    results = load_results(folder / "results.json")
    per_task = (results.recommendation or {}).get("per_task")
    if not per_task or not results.seeds:
        raise ConfigError(f"{folder}: the study has no recommendation to predict with "
                          "(give one of its run folders instead)")
    runs = recommended_runs(results, dict(per_task), results.seeds[0])
    if runs is None:
        raise ConfigError(f"{folder}: a recommended model of seed {results.seeds[0]} has no "
                          "finished run (give one of its run folders instead)")
    return ([(_resolve_checkpoint(folder / run_dir), tasks) for run_dir, tasks in runs],
            list(per_task))


def _is_manifest(inputs: list[Path], faces: bool | None, model: Model) -> bool:
    """A manifest or array, or a folder of images (no videos) predicted whole."""
    from dmtl.inference.media import MANIFEST_SUFFIXES, VIDEO_SUFFIXES

    if len(inputs) != 1:
        return False
    given = inputs[0]
    if given.suffix.lower() in MANIFEST_SUFFIXES:
        return True
    whole = faces is False or (faces is None and model.card.crop is None)
    return (
        given.is_dir() and whole
        and not any(p.suffix.lower() in VIDEO_SUFFIXES for p in given.rglob("*"))
    )


def _predict_manifest(
    model: Model, inputs: list[Path], output: Path, root: Path | None, array: Path | None,
    allow_outside_root: bool,
) -> int:
    from dmtl.inference.faces import write_table
    from dmtl.inference.predict import input_source, predict_frame

    source = input_source(
        model.card, inputs[0], root=root, array=array, allow_outside_root=allow_outside_root
    )
    frame = predict_frame(model, source)
    write_table(frame, output)
    return len(frame)


def _predict_media(
    model: Model, inputs: list[Path], output: Path, faces: bool | None, detector: str,
    detector_option: list[str] | None, every: int, batch_size: int, max_faces: int | None,
    smooth: float | None, plots: Path | None, annotate: Path | None, overwrite: bool,
) -> None:
    from dmtl.inference.detectors import parse_detector_options
    from dmtl.inference.faces import Predictor, write_table

    with warnings_as_lines():
        predictor = Predictor(
            model, faces=faces, detector=detector,
            detector_options=parse_detector_options(detector_option), every=every,
            batch_size=batch_size, max_faces=max_faces, smooth=smooth,
        )
    frame = predictor.predict(inputs)
    write_table(frame, output)
    tracks = frame.groupby(["file", "face"]).ngroups if len(frame) else 0
    console.print(
        f"{len(frame)} face rows ({predictor.frames} frames, {tracks} face tracks) written "
        f"to [bold]{escape(str(output))}[/]",
        soft_wrap=True,
    )
    if plots is not None or annotate is not None:
        from dmtl.inference.face_plots import annotate_media, plot_tracks

        if plots is not None:
            written = plot_tracks(frame, model.card, plots, overwrite)
            console.print(f"{len(written)} track pictures in [bold]{escape(str(plots))}[/]")
        if annotate is not None:
            written = annotate_media(frame, model.card, annotate, overwrite)
            console.print(f"{len(written)} annotated files in [bold]{escape(str(annotate))}[/]")
