"""The model card: everything needed to use a trained model, outside the training code.

A :class:`ModelCard` lists the tasks (kind, class / label / target names, zero-shot
classes), the input (shape, image channels and size, normalisation), the decision
thresholds of binary-set labels, the relatedness tables that score zero-shot classes,
and the dmtl version. It travels inside every exported model as one JSON document
(ONNX ``metadata_props["dmtl"]``, TorchScript ``_extra_files["dmtl.json"]``) and
drives ``dmtl predict`` for checkpoints and exported files alike.

:func:`model_card` is the one place that reads a trained
:class:`~dmtl.training.module.MultiTaskModule`.

The JSON document (``format_version`` 1)::

    {"format": "dmtl-model-card", "format_version": 1, "dmtl_version": "0.1.0",
     "name": "digits-scarce", "outputs": "probabilities",
     "input": {"name": "input", "shape": [1, 8, 8], "channels": 1, "image_size": 8,
               "mean": [0.5], "std": [0.25], "crop_pct": 1.0,
               "crop": {"kind": "eye_aligned", "size": [112, 112], ...} or null},
     "tasks": [{"name": "digit", "kind": "categorical", "classes": ["0", ...],
                "zero_shot": []},
               {"name": "shape", "kind": "binary_set", "labels": ["loop", ...],
                "thresholds": [0.5, ...]}],
     "relatedness": [{"source": "expression", "target": "au", "table": [[...], ...],
                      "eps": 0.05, "tau": 1.0}]}

>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> card = ModelCard(
...     name="toy", tasks=(CategoricalTask("digit", ["0", "1"]), BinarySetTask("attr", ["even"])),
...     input_shape=(4,))
>>> ModelCard.from_json(card.to_json()).thresholds
{'attr': (0.5,)}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import Task, task_from_dict
from dmtl.data.crops import CropRecipe
from dmtl.errors import SpecError

if TYPE_CHECKING:
    from dmtl.config import Config

CARD_FORMAT = "dmtl-model-card"
CARD_VERSION = 1
METADATA_KEY = "dmtl"
"""The ONNX ``metadata_props`` key (and, with ``.json``, the TorchScript extra file)."""
DEFAULT_THRESHOLD = 0.5
INVERSE_EPS = 0.05
"""Clamp of R in the inverse map that scores zero-shot classes (``Relatedness.inverse_map``)."""
INVERSE_TAU = 1.0
"""Temperature of that inverse map."""


@dataclass(frozen=True, eq=False)
class ModelCard:
    """A trained model's tasks, input, thresholds and zero-shot tables (see module docstring).

    ``input_shape``: one sample's shape, ``(C, H, W)`` for images, ``(F,)`` for vectors.
    ``channels``/``image_size``: how image files are decoded (grey or RGB, resized to a
    square side), ``None`` where the model does not say. ``mean``/``std``: the
    normalisation ``(x - mean) / std`` per channel (one value or one per channel) applied
    after scaling 8-bit pixels to [0, 1]; ``None`` for none. ``crop_pct``: image files
    are decoded at ``floor(image_size / crop_pct)`` and centre-cropped to ``image_size``
    (1: no crop; ``dmtl.data.transforms``). ``thresholds``: per
    binary-set task, one decision threshold per label on its probability (0.5 unless
    given). ``edges``: the relatedness edges leaving a task with zero-shot classes.
    ``crop``: how the training images were cut from photos, for a model trained on face
    crops (:mod:`dmtl.data.crops`; ``dmtl predict --faces`` cuts detected faces so);
    ``None`` for other models and for cards written before dmtl recorded it.
    """

    name: str
    tasks: tuple[Task, ...]
    input_shape: tuple[int, ...]
    channels: int | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_pct: float = 1.0
    thresholds: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    edges: tuple[Relatedness, ...] = ()
    input_name: str = "input"
    dmtl_version: str = ""
    crop: CropRecipe | None = None

    def __post_init__(self) -> None:
        by_name = {t.name: t for t in self.tasks}
        if len(by_name) != len(self.tasks):
            raise SpecError(f"model card {self.name!r}: two tasks have the same name")
        thresholds = dict(self.thresholds)
        for task in self.tasks:
            if task.kind == "binary_set":
                given = thresholds.get(task.name, (DEFAULT_THRESHOLD,) * task.num_outputs)
                thresholds[task.name] = _checked_thresholds(task, given)
        unknown = sorted(set(thresholds) - {t.name for t in self.tasks if t.kind == "binary_set"})
        if unknown:
            raise SpecError(f"thresholds given for tasks that are not binary sets: {unknown}")
        object.__setattr__(self, "thresholds", thresholds)
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        if not self.dmtl_version:
            from dmtl._version import __version__

            object.__setattr__(self, "dmtl_version", __version__)

    def task(self, name: str) -> Task:
        """The task called ``name``."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"the model has no task {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (a plain mapping)."""
        return {
            "format": CARD_FORMAT,
            "format_version": CARD_VERSION,
            "dmtl_version": self.dmtl_version,
            "name": self.name,
            "outputs": "probabilities",
            "input": {
                "name": self.input_name,
                "shape": list(self.input_shape),
                "channels": self.channels,
                "image_size": self.image_size,
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std),
                "crop_pct": self.crop_pct,
                "crop": None if self.crop is None else self.crop.model_dump(mode="json"),
            },
            "tasks": [_task_to_dict(t, self.thresholds.get(t.name)) for t in self.tasks],
            "relatedness": [
                {
                    "source": e.source.name,
                    "target": e.target.name,
                    "table": e.table.tolist(),
                    "eps": INVERSE_EPS,
                    "tau": INVERSE_TAU,
                }
                for e in self.edges
            ],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "model metadata") -> ModelCard:
        """Parse and validate the JSON document; a :class:`SpecError` naming ``where``."""
        try:
            data = _CardFile.model_validate_json(text)
        except ValidationError as error:
            first = error.errors()[0]
            path = ".".join(str(p) for p in first["loc"])
            raise SpecError(
                f"{where}: not a valid dmtl model card ({path or 'document'}: {first['msg']})"
            ) from None
        if data.format_version > CARD_VERSION:
            raise SpecError(
                f"{where}: model card format {data.format_version} is newer than this dmtl "
                f"reads ({CARD_VERSION}); upgrade dmtl (the model was exported by dmtl "
                f"{data.dmtl_version})"
            )
        try:
            return data.build()
        except SpecError as error:
            raise SpecError(f"{where}: {error}") from None


def _checked_thresholds(task: Task, values: Any) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) != task.num_outputs or not all(0.0 <= v <= 1.0 for v in values):
        raise SpecError(
            f"task {task.name!r}: expected {task.num_outputs} thresholds in [0, 1], got "
            f"{list(values)}"
        )
    return values


def _task_to_dict(task: Task, thresholds: tuple[float, ...] | None) -> dict[str, Any]:
    """The task's own description (:meth:`Task.to_dict`), plus its decision thresholds."""
    return task.to_dict() | ({"thresholds": list(thresholds)} if thresholds else {})


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _InputDoc(_Doc):
    name: str = "input"
    shape: list[int] = Field(min_length=1)
    channels: int | None = None
    image_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    crop_pct: float = Field(default=1.0, gt=0.0, le=1.0)
    crop: CropRecipe | None = None


class _EdgeDoc(_Doc):
    source: str
    target: str
    table: list[list[float]]


class _CardFile(_Doc):
    format: Literal["dmtl-model-card"]
    format_version: int = Field(ge=1)
    dmtl_version: str = ""
    name: str = ""
    input: _InputDoc
    tasks: list[dict[str, Any]] = Field(min_length=1)
    relatedness: list[_EdgeDoc] = Field(default_factory=list)

    def build(self) -> ModelCard:
        tasks = tuple(task_from_dict(t) for t in self.tasks)
        by_name = {t.name: t for t in tasks}
        edges = []
        for doc in self.relatedness:
            source, target = by_name.get(doc.source), by_name.get(doc.target)
            if source is None or not source.can_be_edge_source or target is None:
                raise SpecError(
                    f"relatedness {doc.source}->{doc.target}: needs a categorical source task "
                    f"and a target task of the model ({', '.join(by_name)})"
                )
            edges.append(Relatedness(source, target, doc.table))
        return ModelCard(
            name=self.name,
            tasks=tasks,
            input_shape=tuple(self.input.shape),
            channels=self.input.channels,
            image_size=self.input.image_size,
            mean=None if self.input.mean is None else tuple(self.input.mean),
            std=None if self.input.std is None else tuple(self.input.std),
            crop_pct=self.input.crop_pct,
            thresholds={
                t["name"]: tuple(t["thresholds"]) for t in self.tasks if t.get("thresholds")
            },
            edges=tuple(edges),
            input_name=self.input.name,
            dmtl_version=self.dmtl_version,
            crop=self.input.crop,
        )


class TrainedNetwork(Protocol):
    """What a card is made from: a :class:`~dmtl.build.checkpoint.TrainedModel` or a
    :class:`~dmtl.training.module.MultiTaskModule`."""

    @property
    def config(self) -> Config: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def tasks(self) -> Sequence[Task]: ...

    @property
    def edges(self) -> Sequence[Relatedness]: ...


def model_card(module: TrainedNetwork) -> ModelCard:
    """The card of a trained model: the ONE function that reads a trained model's recipe.

    Image files are decoded to the channels and square size the model was trained on
    (read from its input shape ``(C, S, S)`` with ``C`` 1 or 3), else as the first
    source's ``input`` section says; normalisation is that section's ``mean``/``std``,
    the evaluation crop its ``crop_pct``.
    """
    cfg = module.config.sources[0].input
    shape = tuple(int(s) for s in module.input_shape)
    channels: int | None = cfg.channels
    image_size: int | None = cfg.image_size
    if len(shape) == 3 and shape[0] in (1, 3) and shape[1] == shape[2]:
        channels, image_size = shape[0], shape[1]
    tasks = tuple(module.tasks)
    return ModelCard(
        name=module.config.name,
        tasks=tasks,
        input_shape=shape,
        channels=channels,
        image_size=image_size,
        mean=None if cfg.mean is None else tuple(cfg.mean),
        std=None if cfg.std is None else tuple(cfg.std),
        crop_pct=cfg.crop_pct or 1.0,
        edges=tuple(e for e in module.edges if e.source.zero_shot),
        input_name=_free_name("input", {t.name for t in tasks}),
        crop=training_crop(module.config),
    )


def training_crop(config: Config) -> CropRecipe | None:
    """The face crop recipe the training data implies: that of the first source read by a
    reader that declares one (``register_reader(..., crop=...)``), else ``None``.

    The readers (pandas and all) are imported only when a source is read by one.
    """
    for source in config.sources:
        if source.reader is not None:
            from dmtl.data.readers import reader_crop_recipe

            recipe = reader_crop_recipe(source.reader, source.options)
            if recipe is not None:
                return recipe
    return None


def _free_name(name: str, taken: set[str]) -> str:
    """``name``, prefixed with ``_`` until no task (an output of the same name) has it."""
    while name in taken:
        name = "_" + name
    return name


__all__ = [
    "CARD_FORMAT",
    "CARD_VERSION",
    "DEFAULT_THRESHOLD",
    "METADATA_KEY",
    "ModelCard",
    "model_card",
    "training_crop",
]
