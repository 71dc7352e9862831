"""Predictions of a trained or exported model, written in the manifest's column naming.

The model is a checkpoint, an ONNX file or a TorchScript file written by ``dmtl export``
(:func:`~dmtl.inference.runtime.load_predictor`); all three give the same columns, built
by :func:`prediction_frame` from the model card and the probabilities.

Output columns: ``id`` (and ``image``, the path read, for image inputs); the
decisions, exactly as a manifest holds labels (``<task>`` = the arg-max class name,
``<task>/<label>`` = ``1[p >= threshold]``, the card's threshold, 0.5 by default), so a
predictions file is itself a valid manifest; and the probabilities, ``p:<task>/<class>``
(for a task of more than 100 classes, its top 5 instead: ``<task>@k`` and ``p:<task>@k``)
and ``p:<task>/<label>``.

Zero-shot classes of a categorical task (declared in the task, with no
training images) are scored through the inverse map of every relatedness
edge that leaves the task (method.md section 4): ``q_A(c|x)`` from the
target task's predicted probabilities. Their columns are
``zs:<task>/<class>`` (the posterior over all of the task's classes given the
other task's predictions) and ``zs:<task>`` (its arg-max among the zero-shot classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import Task
from dmtl.data.batching import build_eval_loader
from dmtl.data.manifest import RESERVED_COLUMNS, Manifest, label_columns
from dmtl.data.sources import ArraySource, ImageSource, Source, load_npy
from dmtl.data.transforms import decode_side, eval_transform
from dmtl.errors import DataError
from dmtl.inference.card import INVERSE_EPS, INVERSE_TAU, ModelCard
from dmtl.inference.runtime import Predictor, load_predictor

MAX_PROBABILITY_COLUMNS = 100
"""A categorical task with more classes gets its top-``TOP_K`` classes instead of one
probability column per class (10,177 identities would be 10,177 columns)."""
TOP_K = 5

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def input_source(
    card: ModelCard,
    inputs: Path,
    root: Path | None = None,
    array: Path | None = None,
    allow_outside_root: bool = False,
) -> Source:
    """A source over the inputs to predict: a manifest, a folder of images or a ``.npy`` array.

    Images are decoded to the card's channels and size (at ``image_size / crop_pct``, then
    centre-cropped, as in evaluation) and every input is normalised with its mean and std.
    The inputs' shape is checked against the model's, so a mismatch is one clear error
    rather than a failure inside the network.
    """
    source = _input_source(card, inputs, root, array, allow_outside_root)
    if isinstance(source, ImageSource) and card.image_size is not None and len(source):
        _, height, width = source.input_shape_raw
        crop = eval_transform((height, width), (card.image_size, card.image_size))
        source = source.with_transforms(None, crop)
    if len(source) and tuple(source.input_shape) != card.input_shape:
        raise DataError(
            f"{inputs}: inputs of shape {tuple(source.input_shape)}, but the model was trained "
            f"on inputs of shape {card.input_shape}"
        )
    return source


def _decode_size(card: ModelCard) -> int | None:
    """The side image files are decoded at before the centre crop (as in training)."""
    if card.image_size is None:
        return None
    return decode_side(card.image_size, card.crop_pct)


def _input_source(
    card: ModelCard, inputs: Path, root: Path | None, array: Path | None, outside: bool
) -> Source:
    tasks = list(card.tasks)
    mean = None if card.mean is None else list(card.mean)
    std = None if card.std is None else list(card.std)
    if inputs.is_dir():
        files = sorted(p for p in inputs.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                f"{inputs}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"
            )
        manifest = pd.DataFrame({"image": [str(p.relative_to(inputs)) for p in files]})
        return Source.from_manifest(
            "inputs",
            manifest,
            inputs,
            tasks,
            channels=card.channels,
            image_size=_decode_size(card),
            mean=mean,
            std=std,
            require_labels=False,
        )
    if inputs.suffix.lower() == ".npy":
        values = load_npy(inputs)
        empty = {t.name: t.unlabelled(len(values)) for t in tasks}
        return ArraySource("inputs", tasks, inputs, empty, mean=mean, std=std)
    if not inputs.is_file():
        raise DataError(f"{inputs}: no such manifest, folder or array")
    is_index = array is not None
    listed = Manifest.from_frame(
        _input_columns(inputs), tasks, root if root is not None else inputs.parent,
        origin=str(inputs), require_labels=False,
    )
    return Source.from_manifest(
        "inputs",
        listed,
        None,
        tasks,
        array=array,
        channels=None if is_index else card.channels,
        image_size=None if is_index else _decode_size(card),
        mean=mean,
        std=std,
        require_labels=False,
        allow_outside_root=outside,
    )


def _input_columns(path: Path) -> pd.DataFrame:
    """A manifest's ``id``/``image``/``index``/``split`` columns: labels are not needed to
    predict, and may name tasks the model does not have."""
    keep = set(RESERVED_COLUMNS)
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
            return frame[[c for c in frame.columns if c in keep]]
        return pd.read_csv(path, usecols=lambda c: c in keep, dtype={"id": str})
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: cannot read the manifest ({error})") from None


def predict_frame(predictor: Predictor, source: Source, batch_size: int = 256) -> pd.DataFrame:
    """Probabilities and decisions for every sample of ``source`` (see the module docstring)."""
    card = predictor.card
    loader = build_eval_loader([source], batch_size=batch_size, tasks=list(card.tasks))
    chunks: dict[str, list[torch.Tensor]] = {t.name: [] for t in card.tasks}
    for batch in loader:
        for name, p in predictor.probabilities(batch.x).items():
            chunks[name].append(p.float())
    probs = {
        t.name: torch.cat(chunks[t.name]) if chunks[t.name] else torch.empty(0, t.num_outputs)
        for t in card.tasks
    }
    images = list(source.paths) if isinstance(source, ImageSource) else None
    return prediction_frame(card, probs, list(source.ids), images)


def prediction_frame(
    card: ModelCard,
    probs: dict[str, torch.Tensor],
    ids: Sequence[object],
    images: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The predictions table from every task's probabilities ``(N, K)``, in card order:
    ``id`` (and ``image``), the decisions, the probabilities, the zero-shot scores."""
    columns: dict[str, object] = {"id": list(ids)}
    if images is not None:
        columns["image"] = list(images)
    for task in card.tasks:
        columns.update(decision_columns(task, probs[task.name], card.thresholds.get(task.name)))
    for task in card.tasks:
        columns.update(probability_columns(task, probs[task.name]))
    for edge in card.edges:
        columns.update(zero_shot_columns(edge, probs))
    return pd.DataFrame(columns)


def decision_columns(
    task: Task, p: torch.Tensor, thresholds: Sequence[float] | None = None
) -> dict[str, object]:
    """As a manifest holds labels (``task.decide``): ``<task>`` = the arg-max class name of a
    categorical task, ``<task>/<label>`` = ``1[p_j >= threshold_j]`` (0.5 by default) for a
    binary set, ``<task>/<target>`` = the predicted value for a regression task."""
    return dict(label_columns(task, task.decide(p, thresholds)))


def probability_columns(task: Task, p: torch.Tensor) -> dict[str, object]:
    """``p:<task>/<name>`` per class or label; the top ``TOP_K`` for very many classes; none
    for a regression task (its values are its decisions)."""
    if task.kind == "regression":
        return {}
    if task.kind == "categorical" and task.num_outputs > MAX_PROBABILITY_COLUMNS:
        top = p.topk(min(TOP_K, task.num_outputs), dim=-1)
        columns: dict[str, object] = {}
        for k in range(top.indices.shape[1]):
            columns[f"{task.name}@{k + 1}"] = [task.names[i] for i in top.indices[:, k].tolist()]
            columns[f"p:{task.name}@{k + 1}"] = top.values[:, k].numpy()
        return columns
    return {f"p:{task.name}/{name}": p[:, j].numpy() for j, name in enumerate(task.names)}


def zero_shot_columns(edge: Relatedness, probs: dict[str, torch.Tensor]) -> dict[str, object]:
    """Scores of the source task's zero-shot classes through the inverse map of ``edge``."""
    task = edge.source
    if not task.zero_shot or edge.target.name not in probs:
        return {}
    q = edge.inverse_map(probs[edge.target.name].float(), eps=INVERSE_EPS, tau=INVERSE_TAU)
    out: dict[str, object] = {}
    for j, name in enumerate(task.classes):
        out[f"zs:{task.name}/{name}"] = q[:, j].numpy()
    zero_shot = [task.index(c) for c in task.zero_shot]
    best = q[:, zero_shot].argmax(-1).tolist()
    out[f"zs:{task.name}"] = [task.zero_shot[i] for i in best]
    return out


def predict_to_csv(
    model: Path,
    inputs: Path,
    output: Path,
    root: Path | None = None,
    array: Path | None = None,
    allow_outside_root: bool = False,
) -> pd.DataFrame:
    """Load ``model`` (a checkpoint, ``.onnx`` or TorchScript file), predict ``inputs``, write
    ``output`` (CSV or Parquet by suffix). ``allow_outside_root``: accept manifest image
    paths that are absolute or climb above ``root``."""
    predictor = load_predictor(model)
    source = input_source(
        predictor.card, inputs, root=root, array=array, allow_outside_root=allow_outside_root
    )
    frame = predict_frame(predictor, source)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".parquet":
        frame.to_parquet(output, index=False)
    else:
        frame.to_csv(output, index=False)
    return frame
