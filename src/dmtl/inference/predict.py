"""Predictions of a trained model, written in the manifest's column naming.

Output columns: ``id`` (and ``image``, the path read, for image inputs); the
decisions, exactly as a manifest holds labels (``<task>`` = the arg-max class name,
``<task>/<label>`` = ``1[p >= 0.5]``), so a predictions file is itself a valid
manifest; and the probabilities, ``p:<task>/<class>`` (for a task of more than 100
classes, its top 5 instead: ``<task>@k`` and ``p:<task>@k``) and ``p:<task>/<label>``.

Zero-shot classes of a categorical task (declared in the task, with no
training images) are scored through the inverse map of every relatedness
edge that leaves the task (method.md section 4): ``q_A(c|x)`` from the
target task's predicted probabilities. Their columns are
``zs:<task>/<class>`` (the posterior over all of the task's classes given the
other task's predictions) and ``zs:<task>`` (its arg-max among the zero-shot classes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import Task
from dmtl.data.batching import build_eval_loader
from dmtl.data.manifest import RESERVED_COLUMNS, Manifest, label_columns
from dmtl.data.sources import ArraySource, ImageSource, Source
from dmtl.errors import DataError
from dmtl.training.module import MultiTaskModule, load_module

MAX_PROBABILITY_COLUMNS = 100
"""A categorical task with more classes gets its top-``TOP_K`` classes instead of one
probability column per class (10,177 identities would be 10,177 columns)."""
TOP_K = 5

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def input_source(
    module: MultiTaskModule, inputs: Path, root: Path | None = None, array: Path | None = None
) -> Source:
    """A source over the inputs to predict: a manifest, a folder of images or a ``.npy`` array.

    Normalisation follows the first source of the model's config; images are decoded to
    the channels and size the model was trained on. The inputs' shape is checked against
    the model's, so a mismatch is one clear error rather than a failure inside the network.
    """
    source = _input_source(module, inputs, root, array)
    trained = tuple(module.hparams["input_shape"])
    if len(source) and tuple(source.input_shape) != trained:
        raise DataError(
            f"{inputs}: inputs of shape {tuple(source.input_shape)}, but the model was trained "
            f"on inputs of shape {trained}"
        )
    return source


def _input_source(
    module: MultiTaskModule, inputs: Path, root: Path | None, array: Path | None
) -> Source:
    cfg = module.config.sources[0].input
    tasks = module.tasks
    trained = tuple(module.hparams["input_shape"])
    channels, image_size = cfg.channels, cfg.image_size
    if len(trained) == 3 and trained[0] in (1, 3) and trained[1] == trained[2]:
        channels, image_size = trained[0], trained[1]
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
            channels=channels,
            image_size=image_size,
            mean=cfg.mean,
            std=cfg.std,
            require_labels=False,
        )
    if inputs.suffix.lower() == ".npy":
        values = np.load(inputs, mmap_mode="r")
        empty = {t.name: t.unlabelled(len(values)) for t in tasks}
        return ArraySource("inputs", tasks, inputs, empty, mean=cfg.mean, std=cfg.std)
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
        channels=None if is_index else channels,
        image_size=None if is_index else image_size,
        mean=cfg.mean,
        std=cfg.std,
        require_labels=False,
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


@torch.no_grad()
def predict_frame(module: MultiTaskModule, source: Source, batch_size: int = 256) -> pd.DataFrame:
    """Probabilities and decisions for every sample of ``source`` (see the module docstring)."""
    module.eval()
    device = next(module.parameters()).device
    loader = build_eval_loader([source], batch_size=batch_size, tasks=module.tasks)
    chunks: dict[str, list[torch.Tensor]] = {t.name: [] for t in module.tasks}
    for batch in loader:
        logits = module.model(batch.x.to(device))
        for task in module.tasks:
            chunks[task.name].append(task.predict(logits[task.name].float()).cpu())
    probs = {name: torch.cat(parts) if parts else torch.empty(0) for name, parts in chunks.items()}
    columns: dict[str, object] = {"id": list(source.ids)}
    if isinstance(source, ImageSource):
        columns["image"] = list(source.paths)
    for task in module.tasks:
        columns.update(label_columns(task, task.decide(probs[task.name])))
    for task in module.tasks:
        columns.update(probability_columns(task, probs[task.name]))
    for edge in module.edges:
        columns.update(zero_shot_columns(edge, probs))
    return pd.DataFrame(columns)


def probability_columns(task: Task, p: torch.Tensor) -> dict[str, object]:
    """``p:<task>/<name>`` per class or label; the top ``TOP_K`` for very many classes."""
    if task.kind == "regression":
        return {}  # the decisions are the values
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
    q = edge.inverse_map(probs[edge.target.name].float())
    out: dict[str, object] = {}
    for j, name in enumerate(task.classes):
        out[f"zs:{task.name}/{name}"] = q[:, j].numpy()
    zero_shot = [task.index(c) for c in task.zero_shot]
    best = q[:, zero_shot].argmax(-1).tolist()
    out[f"zs:{task.name}"] = [task.zero_shot[i] for i in best]
    return out


def predict_to_csv(
    checkpoint: Path,
    inputs: Path,
    output: Path,
    root: Path | None = None,
    array: Path | None = None,
) -> pd.DataFrame:
    """Load ``checkpoint``, predict ``inputs``, write ``output`` (CSV or Parquet by suffix)."""
    module = load_module(checkpoint)
    source = input_source(module, inputs, root=root, array=array)
    frame = predict_frame(module, source)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".parquet":
        frame.to_parquet(output, index=False)
    else:
        frame.to_csv(output, index=False)
    return frame
