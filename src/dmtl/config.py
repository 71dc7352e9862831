"""The run configuration: one YAML file, validated with pydantic, with dotted-key overrides.

Every problem is reported at once, each with its dotted path (``sources.0.regime.fraction``).
See ``configs/`` for examples and ``docs/config.md`` for every key.

A config file is read as plain YAML and bounded: at most :data:`MAX_CONFIG_BYTES` bytes of
UTF-8 text, at most :data:`MAX_YAML_VALUES` values once every alias is expanded (so an
"alias bomb" is refused at once instead of filling the memory), no recursive alias, no key
given twice in a mapping, and no tag that would build a Python object.
"""

from __future__ import annotations

import copy
import math
import os
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

import dmtl.registry as registry
from dmtl._textfile import not_a_file, read_text
from dmtl.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20
"""The largest config file read (1 MiB; a config is a few kilobytes)."""

MAX_YAML_VALUES = 100_000
"""The most values (scalars, lists, mappings) a config may hold, every alias expanded."""


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=False, protected_namespaces=(), allow_inf_nan=False
    )


TaskKind = Literal["categorical", "binary_set", "regression"]
"""The names of the built-in task kinds (``type`` of a task entry)."""


class _TaskConfigBase(_Strict):
    """A task declared in the config: ``name`` plus its kind's fields.

    Manifest sources need their tasks declared with their names (classes, labels or
    targets). A task that a built-in dataset or a reader brings may be listed by name
    and kind alone, to set its training options.
    """

    name: str

    def output_names(self) -> list[str] | None:
        """The classes, labels or targets given (``None``: the task comes from a source)."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What the task is, as ``Task.to_dict()`` writes it (``task_from_dict`` builds it)."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """Its training options, as ``task.with_options`` takes them (``balanced`` weights
        are left for the training labels to decide)."""
        raise NotImplementedError

    def balanced_option(self, method: MethodConfig) -> str | None:
        """The task option to set to balanced weights from the training labels, if any."""
        return None


class CategoricalTaskConfig(_TaskConfigBase):
    """A categorical task: ``classes``; optional ``zero_shot`` classes (no training images,
    scored through a relatedness table), ``class_weight`` (``balanced``, ``n / (C n_c)`` over
    the training labels, or one weight per class) and ``label_smoothing``."""

    type: Literal["categorical"]
    classes: list[str] | None = None
    zero_shot: list[str] = Field(default_factory=list)
    class_weight: Literal["balanced"] | list[float] | None = None
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)

    def output_names(self) -> list[str] | None:
        return self.classes

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "classes": self.classes or [],
                "zero_shot": self.zero_shot}

    def options(self) -> dict[str, Any]:
        weight = None if self.class_weight in (None, "balanced") else self.class_weight
        return {"class_weight": weight, "label_smoothing": self.label_smoothing}

    def balanced_option(self, method: MethodConfig) -> str | None:
        return "class_weight" if self.class_weight == "balanced" else None


class BinarySetTaskConfig(_TaskConfigBase):
    """A binary-set task: ``labels``; optional ``pos_weight`` (``balanced``, ``n_neg / n_pos``
    per label over the training labels, or one weight per label; default: ``method.pos_weight``)."""

    type: Literal["binary_set"]
    labels: list[str] | None = None
    pos_weight: Literal["balanced", "none"] | list[float] | None = None

    def output_names(self) -> list[str] | None:
        return self.labels

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "labels": self.labels or []}

    def options(self) -> dict[str, Any]:
        return {"pos_weight": self.pos_weight} if isinstance(self.pos_weight, list) else {}

    def balanced_option(self, method: MethodConfig) -> str | None:
        """``pos_weight: balanced``, or none given and ``method.pos_weight: balanced``."""
        wanted = self.pos_weight or method.pos_weight
        return "pos_weight" if wanted == "balanced" else None


class RegressionTaskConfig(_TaskConfigBase):
    """A regression task: ``targets``; optional ``range`` ``[low, high]`` of valid labels and
    ``loss``: ``mse`` (squared error) or ``ccc`` (1 - concordance correlation coefficient)."""

    type: Literal["regression"]
    targets: list[str] | None = None
    range: tuple[float, float] | None = None
    loss: Literal["mse", "ccc"] = "mse"

    def output_names(self) -> list[str] | None:
        return self.targets

    def identity(self) -> dict[str, Any]:
        low, high = self.range if self.range is not None else (None, None)
        return {"name": self.name, "type": self.type, "targets": self.targets or [],
                "low": low, "high": high}

    def options(self) -> dict[str, Any]:
        return {"loss": self.loss}


TaskConfig = Annotated[
    CategoricalTaskConfig | BinarySetTaskConfig | RegressionTaskConfig,
    Field(discriminator="type"),
]
"""A task entry; ``type`` (``categorical``, ``binary_set``, ``regression``) picks its schema."""

TASK_CONFIGS: dict[str, type[_TaskConfigBase]] = {
    "categorical": CategoricalTaskConfig,
    "binary_set": BinarySetTaskConfig,
    "regression": RegressionTaskConfig,
}
"""Task kind -> the schema of its config entry."""


class RegimeConfig(_Strict):
    """A label-hiding regime (``dmtl.data.regimes``): ``name`` plus its parameters (each
    regime's typed model in ``dmtl.registry.REGIMES``)."""

    name: str = "full"
    params: dict[str, Any] = Field(default_factory=dict)


AUGMENT_PRESETS = registry.AUGMENT_PRESETS
"""The train-time augmentation presets of ``input.augment`` (``dmtl.data.transforms``)."""


class InputConfig(_Strict):
    """How inputs are decoded, cropped, augmented and normalised (``docs/images.md``).

    ``channels`` None keeps the first image's mode (grey or RGB); ``image_size`` None keeps
    the images' size (they must then all have the same). Image files are decoded at
    ``floor(image_size / crop_pct)`` and cropped to ``image_size``: at the centre for
    evaluation, by the ``augment`` preset for training. With a pretrained timm or
    torchvision backbone, ``mean``, ``std``, ``image_size``, ``crop_pct`` (and ``channels``
    of image files) left unset come from the backbone's data config.
    ``cache: memory`` decodes every image once, when the source is loaded, and keeps the
    pixels in memory (``N * C * H * W`` bytes as ``uint8``; a memory-mapped ``.npy`` is
    read into memory); refused above ``cache_max_gb`` or half the memory available.
    """

    channels: Literal[1, 3] | None = None
    image_size: int | None = Field(default=None, gt=0)
    mean: list[float] | None = None
    std: list[float] | None = None
    crop_pct: float | None = Field(default=None, gt=0.0, le=1.0)
    augment: str = "none"
    crop_scale: tuple[float, float] = (0.5, 1.0)
    cache: Literal["none", "memory"] = "none"
    cache_max_gb: float = Field(default=8.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and (set(REMOVED_INPUT_KEYS) & set(data)):
            given = ", ".join(k for k in REMOVED_INPUT_KEYS if k in data)
            raise PydanticCustomError(
                "removed_key",
                f"{given}: removed; use 'augment: light' (random resized crop + horizontal "
                "flip), 'standard' (+ colour jitter) or 'randaugment' (docs/images.md)",
            )
        return data

    @model_validator(mode="after")
    def _check(self) -> InputConfig:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise PydanticCustomError(
                "crop_scale", f"crop_scale {list(self.crop_scale)}: need 0 < low <= high <= 1"
            )
        return self

    def decode_size(self) -> int | None:
        """The side image files are decoded at: ``floor(image_size / crop_pct)`` (timm's rule,
        ``dmtl.data.transforms.decode_side``)."""
        if self.image_size is None:
            return None
        return math.floor(self.image_size / (self.crop_pct or 1.0))


_is_factory_name = registry.is_factory_name


class SourceConfig(_Strict):
    """One source: a built-in dataset, a manifest (+ root / array), or a reader over a folder."""

    name: str
    builtin: str | None = None
    manifest: Path | None = None
    root: Path | None = None
    array: Path | None = None
    reader: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    regime: RegimeConfig = Field(default_factory=RegimeConfig)
    weight: float = Field(default=1.0, gt=0)
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    val_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    input: InputConfig = Field(default_factory=InputConfig)
    skip_corrupt: bool = False
    max_samples: int | None = Field(default=None, gt=0)
    split: Literal["train", "val", "test"] | None = None
    """The split of every row of a source without a split column (e.g. a test set given as
    its own manifest); ``None``: its split column, or all rows train when it has none."""
    allow_outside_root: bool = False
    """Accept manifest image paths that are absolute or leave ``root`` through ``..``."""

    def split_name(self) -> str | None:
        """The name, in this source's split column, of the split that ``split`` declares."""
        if self.split is None:
            return None
        return {"train": self.train_split, "val": self.val_split, "test": self.test_split}[
            self.split
        ]
    balance: str | None = None
    """A categorical task: this source's share of each training batch is drawn class-balanced."""
    # ---- packed sources (docs/datasets.md, "Shards")
    shards: str | None = None
    """A source packed by ``dmtl datasets pack``: its folder, or an object-store URL
    (``s3://bucket/pack/source``); instead of ``builtin``, ``manifest`` or ``reader``."""
    shards_cache: Path | None = None
    """Where a remote pack's index files and chunks are cached (default: LitData's)."""

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        kinds = [
            k for k in ("builtin", "manifest", "reader", "shards") if getattr(self, k) is not None
        ]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of 'builtin', 'manifest' or 'reader' (or 'shards', a packed "
                f"source) (got {kinds or 'none'})"
            )
        if self.reader is not None and self.root is None:
            raise ValueError("a 'reader' source needs 'root' (the dataset folder)")
        return self


class EdgeConfig(_Strict):
    """A relatedness edge ``source -> target``.

    ``kind``: ``knowledge`` (a table shipped with a built-in dataset or reader), ``affect``
    (the built-in expression -> AU table, restricted to the target's AUs), ``table`` (a CSV
    file at ``path``), ``estimate`` (from the co-annotated training samples, smoothing
    ``alpha``).
    """

    source: str
    target: str
    kind: Literal["knowledge", "affect", "table", "estimate"] = "estimate"
    path: Path | None = None
    alpha: float = Field(default=1.0, ge=0.0)

    @model_validator(mode="after")
    def _path(self) -> EdgeConfig:
        if self.kind == "table" and self.path is None:
            raise ValueError("kind 'table' needs 'path' (a CSV file)")
        return self


class HeadsConfig(_Strict):
    """Task heads: ``Linear -> ReLU (-> Dropout)`` per ``hidden`` width, then the output layer;
    ``per_task`` gives some tasks their own widths. No hidden layer: one linear layer."""

    hidden: list[int] = Field(default_factory=list)
    per_task: dict[str, list[int]] = Field(default_factory=dict)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class BackboneConfig(_Strict):
    """``name``: ``mlp``, ``small_cnn``, ``timm:<m>``, ``torchvision:<m>``, ``pkg.mod:function``
    (``dmtl.registry.BACKBONES``). ``weights``: a local file of the backbone's weights (a
    state dict saved with ``torch.save``), loaded instead of downloading ``pretrained`` ones."""

    name: str = "mlp"
    pretrained: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    weights: Path | None = None


class BranchConfig(_Strict):
    """One branch: ``tasks`` get their own copy of the backbone's stages from stage ``at``
    on (``0``: from the input, nothing shared; stages ``< at`` stay shared)."""

    tasks: Annotated[list[str], Field(min_length=1)]
    at: int = Field(ge=0)


class BranchOptions(_Strict):
    """``architecture.name: branch``. ``branches``: the groups that leave the shared trunk
    (tasks in no branch keep the backbone); ``auto``: choose them from the task affinity
    measured on the training data before the run (``affinity_epochs`` epochs, lookahead
    every ``affinity_every`` steps); ``max_groups`` caps the groups auto forms."""

    branches: list[BranchConfig] = Field(default_factory=list)
    auto: bool = False
    affinity_epochs: int = Field(default=2, ge=1)
    affinity_every: int = Field(default=4, ge=1)
    max_groups: int | None = Field(default=None, ge=1)


class ExpertOptions(_Strict):
    """``architecture.name: mmoe`` or ``ple``: experts over the backbone's features, one
    softmax gate per task. ``shared_experts``: experts every task's gate sees;
    ``task_experts``: experts of each task's own (``mmoe``: 0); ``levels``: stacked
    extraction layers (``ple``; 1 is CGC); ``width``: an expert's output width (default
    the backbone's); ``at``: experts are copies of the backbone's stages from ``at`` on
    instead of a ``Linear -> ReLU`` over its pooled features (``levels`` must then be 1)."""

    shared_experts: int = Field(default=2, ge=0)
    task_experts: int = Field(default=1, ge=0)
    levels: int = Field(default=1, ge=1)
    width: int | None = Field(default=None, ge=1)
    at: int | None = Field(default=None, ge=0)


ARCHITECTURE_OPTIONS: dict[str, type[_Strict] | None] = {
    "shared": None,
    "branch": BranchOptions,
    "mmoe": ExpertOptions,
    "ple": ExpertOptions,
}
"""The typed options of each ``architecture.name``."""


class ArchitectureConfig(_Strict):
    """Task-specific capacity over the backbone: ``shared`` (one trunk, the default),
    ``branch``, ``mmoe`` or ``ple`` with their typed ``options`` (see docs/config.md)."""

    name: Literal["shared", "branch", "mmoe", "ple"] = "shared"
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _options(self) -> ArchitectureConfig:
        self.typed_options()
        return self

    def typed_options(self) -> Any:
        """The options as their typed model (``None`` for ``shared``); a bad key or value
        is a ``ValueError`` naming ``architecture.options.<key>``."""
        kind = ARCHITECTURE_OPTIONS[self.name]
        if kind is None:
            if self.options:
                raise ValueError(
                    f"architecture 'shared' takes no options, got {sorted(self.options)}"
                )
            return None
        try:
            typed = kind.model_validate(self.options)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in ("options", *first["loc"]))
            raise ValueError(f"{where}: {first['msg']}") from None
        if self.name == "mmoe" and self.options.get("task_experts", 0):
            raise ValueError("options.task_experts: mmoe has shared experts only (use ple)")
        if self.name == "mmoe":
            typed = typed.model_copy(update={"task_experts": 0})
        if getattr(typed, "levels", 1) > 1 and getattr(typed, "at", None) is not None:
            raise ValueError("options.levels: experts copied from the backbone (at) take one level")
        return typed


class MethodConfig(_Strict):
    """Switches and weights of the objective (``dmtl.core.objective.Objective``)."""

    co_annotation: Literal["off", "soft", "hard"] = "off"
    lambda_ca: float = Field(default=1.0, ge=0.0)
    ca_eps: float = Field(default=0.05, gt=0.0, lt=0.5)
    ca_tau: float = Field(default=1.0, gt=0.0)
    hard_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    distribution_matching: bool = False
    dm_forward: bool = True
    dm_inverse: bool = True
    lambda_dm: float = Field(default=1.0, ge=0.0)
    dm_warmup_epochs: float = Field(default=0.0, ge=0.0)
    dm_eps: float = Field(default=0.05, gt=0.0, lt=0.5)
    dm_tau: float = Field(default=3.0, gt=0.0)
    stop_gradient: bool = True
    prior: Literal["uniform", "frequency"] = "uniform"
    task_weights: dict[str, float] = Field(default_factory=dict)
    pos_weight: Literal["none", "balanced"] = "none"
    weighting: str = "fixed"
    weighting_options: dict[str, Any] = Field(default_factory=dict)
    aggregator: str = "sum"
    aggregator_options: dict[str, Any] = Field(default_factory=dict)
    guard: bool = False
    guard_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_combiner(self) -> MethodConfig:
        if self.weighting == "uncertainty" and self.aggregator != "sum":
            raise ValueError(
                "weighting 'uncertainty' learns from the summed loss; it cannot be combined "
                f"with aggregator {self.aggregator!r} (use one or the other)"
            )
        return self


class OptimConfig(_Strict):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0)
    schedule: Literal["none", "cosine"] = "cosine"
    backbone_lr_scale: float = Field(default=1.0, ge=0.0)
    """The trunk learns at ``lr * backbone_lr_scale``, the heads at ``lr`` (0 freezes it)."""


class EarlyStoppingConfig(_Strict):
    """Stop when ``trainer.monitor`` has not improved for ``patience`` validations, watched
    from epoch ``min_epochs`` on: the first epochs' validation metrics, noisy where
    validation labels are few, cannot end a run."""

    enabled: bool = False
    patience: int = Field(default=5, ge=1)
    min_epochs: int = Field(default=0, ge=0)


class TrainerConfig(_Strict):
    """What Lightning's ``Trainer`` gets, plus the batch and epoch definition."""

    max_epochs: int = Field(default=20, ge=1)
    steps_per_epoch: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=64, ge=1)
    eval_batch_size: int = Field(default=512, ge=1)
    num_workers: int = Field(default=0, ge=0)
    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    num_nodes: int = Field(default=1, ge=1)
    strategy: str = "auto"
    precision: str = "32-true"
    deterministic: bool = False
    seed: int = 0
    monitor: str | None = None
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    gradient_clip_val: float | None = None
    log_every_n_steps: int = Field(default=10, ge=1)
    num_threads: Annotated[int, Field(ge=1)] | Literal["auto"] | None = "auto"
    """torch's intra-op threads: a number; ``auto``, the cores this process may use
    (``os.sched_getaffinity``) shared among the training processes of the machine; None
    leaves torch's setting alone."""
    progress_bar: bool = True
    validation_labels: Literal["regime", "full"] = "regime"
    """Validation rows keep what the label regime keeps (``regime``: a task with 3% of its
    training labels has about 3% of its validation labels), or all their labels (``full``)."""


LoggerName = Literal["csv", "tensorboard", "mlflow", "wandb"]
"""Experiment trackers, through Lightning's loggers (``csv`` is always written)."""


_CSV_ONLY: list[LoggerName] = ["csv"]


class MlflowConfig(_Strict):
    """MLflow: ``tracking_uri`` (default: ``MLFLOW_TRACKING_URI``, else ``./mlruns``) and
    ``experiment`` (default: the config's ``name``)."""

    tracking_uri: str | None = None
    experiment: str | None = None


class WandbConfig(_Strict):
    """Weights & Biases: ``project`` (default: the config's ``name``), ``entity``, ``mode``
    (``online`` / ``offline``; default: ``WANDB_MODE``, else online)."""

    project: str | None = None
    entity: str | None = None
    mode: Literal["online", "offline"] | None = None


class OutputConfig(_Strict):
    """Where a run writes, what it logs to, and which checkpoint it evaluates.

    ``tensorboard: true`` (an older key) is read as ``loggers: [csv, tensorboard]``.
    """

    dir: Path = Path("runs/run")
    loggers: list[LoggerName] = Field(default_factory=lambda: _CSV_ONLY.copy())
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    checkpoint: Literal["last", "best"] = "last"

    @model_validator(mode="before")
    @classmethod
    def _tensorboard_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "tensorboard" in data:
            data = dict(data)
            on = data.pop("tensorboard")
            if not isinstance(on, bool):
                raise PydanticCustomError(
                    "tensorboard", "tensorboard: expected true or false (or use 'loggers')"
                )
            if on:
                data["loggers"] = [*(data.get("loggers") or ["csv"]), "tensorboard"]
        return data

    @model_validator(mode="after")
    def _csv_first(self) -> OutputConfig:
        self.loggers = ["csv", *dict.fromkeys(n for n in self.loggers if n != "csv")]
        return self


Variant = Literal[
    "single_task",
    "mtl",
    "mtl+ca",
    "mtl+dm",
    "mtl+ca+dm",
    "mtl+ca+dm+guard",
    "mtl+ca+dm+upgrad",
    "mtl+ca+dm+uw",
    "mtl+ca+dm+branch",
    "mtl+ca+dm+mmoe",
    "mtl+ca+dm+ple",
]
ALL_VARIANTS: tuple[Variant, ...] = typing.get_args(Variant)
"""Every variant a study knows, in report order."""
ARCHITECTURE_VARIANTS: tuple[Variant, ...] = (
    "mtl+ca+dm+branch", "mtl+ca+dm+mmoe", "mtl+ca+dm+ple"
)
"""Variants with task-specific capacity (``architecture``): in ``--variants all``, not in
the default list (each adds a run per seed)."""
DEFAULT_VARIANTS: tuple[Variant, ...] = tuple(
    v for v in ALL_VARIANTS if v not in ARCHITECTURE_VARIANTS
)

_CA_DM: dict[str, Any] = {"co_annotation": "<study>", "distribution_matching": True}

VARIANT_METHODS: dict[str, dict[str, Any]] = {
    "mtl": {"co_annotation": "off", "distribution_matching": False},
    "mtl+ca": {"co_annotation": "<study>", "distribution_matching": False},
    "mtl+dm": {"co_annotation": "off", "distribution_matching": True},
    "mtl+ca+dm": _CA_DM,
    "mtl+ca+dm+guard": {**_CA_DM, "guard": True},
    "mtl+ca+dm+upgrad": {**_CA_DM, "aggregator": "upgrad"},
    "mtl+ca+dm+uw": {**_CA_DM, "weighting": "uncertainty"},
    "mtl+ca+dm+branch": _CA_DM,
    "mtl+ca+dm+mmoe": _CA_DM,
    "mtl+ca+dm+ple": _CA_DM,
}
"""The method switches of each multi-task variant (the rest of ``method`` is the config's;
``<study>``: ``study.co_annotation``). ``single_task`` keeps the config's method."""


VARIANT_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "mtl+ca+dm+branch": {"name": "branch", "options": {"auto": True}},
    "mtl+ca+dm+mmoe": {"name": "mmoe", "options": {}},
    "mtl+ca+dm+ple": {"name": "ple", "options": {}},
}
"""The architecture of each variant with task-specific capacity: the config's own
``architecture`` when it has that name, else this default (``branch``: chosen from the
measured task affinity)."""


class StudyConfig(_Strict):
    """The ablation: variants over seeds, and the protocol every run is trained under.

    ``protocol``: ``early_stopping`` (each run trains up to ``budget_epochs``, default
    ``trainer.max_epochs``, stops when its validation selection metric has not improved
    for ``patience`` epochs but not before ``min_epochs``, default a quarter of the
    budget, and is evaluated at its best checkpoint) or ``equal_steps``
    (every run the same number of steps, evaluated at the last one). Sources without
    validation rows give ``val_fraction`` of their training rows to validation under
    early stopping.

    ``group_by``: a manifest column (``source``: the source's name); when set, each run
    also gives its primary metrics per group of that column on its test split, the worst
    group and the gap (as ``dmtl evaluate --by``). ``groups``: a CSV/Parquet with the
    samples' ``id`` and that column (as ``--groups``; default: each source's manifest).

    ``affinity``: measure the task affinity once (the first seed's data, the shared model,
    as ``dmtl affinity``: a short run of a few epochs) and report it; on by default, its
    cost is a fraction of one training run among the study's many.
    """

    seeds: int = Field(default=3, ge=1)
    variants: list[Variant] = Field(default_factory=lambda: list(DEFAULT_VARIANTS))
    co_annotation: Literal["soft", "hard"] = "soft"
    protocol: Literal["early_stopping", "equal_steps"] = "early_stopping"
    budget_epochs: int | None = Field(default=None, ge=1)
    patience: int = Field(default=5, ge=1)
    min_epochs: int | None = Field(default=None, ge=0)
    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    group_by: str | None = Field(default=None, min_length=1)
    groups: Path | None = None
    affinity: bool = True


class Config(_Strict):
    """A whole run: data, tasks, relatedness, model, method, optimiser, trainer, outputs, study."""

    name: str = "dmtl"
    tasks: list[TaskConfig] = Field(default_factory=list)
    sources: Annotated[list[SourceConfig], Field(min_length=1)]
    relatedness: list[EdgeConfig] = Field(default_factory=list)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    heads: HeadsConfig = Field(default_factory=HeadsConfig)
    architecture: ArchitectureConfig = Field(default_factory=ArchitectureConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)


def variant_method(config: Config, variant: str) -> MethodConfig:
    """``config.method`` with the switches of ``variant`` (:data:`VARIANT_METHODS`),
    validated: :class:`ConfigError` naming the variant if the combination is refused."""
    changes = dict(VARIANT_METHODS.get(variant, {}))
    if changes.get("co_annotation") == "<study>":
        changes["co_annotation"] = config.study.co_annotation
    data = {**config.method.model_dump(), **changes}
    what = f"variant {variant!r} cannot run with this config's method"
    try:
        method = MethodConfig.model_validate(data)
    except ValidationError as error:
        reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise ConfigError([("study.variants", f"{what}: {reason}")]) from None
    problems = registry.AGGREGATORS.problems(
        method.aggregator, method.aggregator_options, "aggregator", "method.aggregator_options"
    )
    if problems:
        raise ConfigError([("study.variants", f"{what}: {problems[0][0]}: {problems[0][1]}")])
    return method


def variant_problems(config: Config) -> list[tuple[str, str]]:
    """The study's variants that cannot run with the config's method (each one line)."""
    problems: list[tuple[str, str]] = []
    for i, variant in enumerate(config.study.variants):
        try:
            variant_method(config, variant)
        except ConfigError as error:
            problems += [(f"study.variants.{i}", message) for _, message in error.problems]
    return problems


def registry_problems(config: Config) -> list[tuple[str, str]]:
    """Every named part and its options against :mod:`dmtl.registry` (backbone, aggregator,
    weighting, guard, regimes, built-in datasets, readers)."""
    method = config.method
    problems = registry.backbone_problems(config.backbone.name, config.backbone.options)
    problems += registry.AGGREGATORS.problems(
        method.aggregator, method.aggregator_options, "method.aggregator",
        "method.aggregator_options",
    )
    problems += registry.WEIGHTINGS.problems(
        method.weighting, method.weighting_options, "method.weighting",
        "method.weighting_options",
    )
    problems += registry.options_problems(
        registry.GuardOptions, method.guard_options, "the guard", "method.guard_options"
    )
    for i, source in enumerate(config.sources):
        problems += _source_registry_problems(f"sources.{i}", source)
    return problems


def _source_registry_problems(at: str, source: SourceConfig) -> list[tuple[str, str]]:
    problems = registry.REGIMES.problems(
        source.regime.name, source.regime.params, f"{at}.regime.name", f"{at}.regime.params"
    )
    if source.builtin is not None:
        problems += registry.BUILTINS.problems(
            source.builtin, source.options, f"{at}.builtin", f"{at}.options"
        )
    elif source.reader is not None:
        problems += registry.READERS.problems(
            source.reader, source.options, f"{at}.reader", f"{at}.options"
        )
    elif source.options:
        problems.append(
            (f"{at}.options", "a manifest source takes no options (options apply to "
             "'builtin' and 'reader' sources)")
        )
    augment = source.input.augment
    if augment not in AUGMENT_PRESETS and not _is_factory_name(augment):
        problems.append(
            (f"{at}.input.augment", f"augment {augment!r}: expected one of "
             f"{', '.join(AUGMENT_PRESETS)} or a 'package.module:factory'")
        )
    return problems


def task_entry(config: Config, name: str, kind: str) -> _TaskConfigBase:
    """The config's entry for task ``name``, or its kind's defaults when it has none."""
    for entry in config.tasks:
        if entry.name == name:
            return entry
    return TASK_CONFIGS[kind].model_validate({"name": name, "type": kind})


def _dotted(loc: Sequence[Any]) -> str:
    """``tasks.1.labels`` for pydantic's ``('tasks', 1, 'binary_set', 'labels')`` (the kind
    tag that picked the task's schema is left out)."""
    parts = [
        str(part)
        for i, part in enumerate(loc)
        if not (i >= 2 and loc[i - 2] == "tasks" and part in TASK_CONFIGS)
    ]
    return ".".join(parts)


class _LimitError(yaml.YAMLError):
    """A bounded YAML document went over a limit (the message says which)."""


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _check_keys(node: yaml.MappingNode) -> None:
    """A key given twice in one mapping would silently drop the first value."""
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        line = key.start_mark.line + 1
        if key.value in seen:
            raise _LimitError(
                f"line {line}: key {key.value!r} is given twice in the same mapping "
                f"(first on line {seen[key.value]})"
            )
        seen[key.value] = line


def _check_expansion(root: yaml.Node, limit: int) -> None:
    """Refuse a document holding more than ``limit`` values once its aliases are expanded,
    a recursive alias, or a duplicated key (an iterative walk: nesting depth is no limit)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(c)] for c in _children(node)))
            if sizes[key] > limit:
                raise _LimitError(
                    f"more than {limit:,} values once its aliases are expanded (from line "
                    f"{node.start_mark.line + 1}); a config holds far fewer: refused as an "
                    "alias bomb"
                )
            continue
        if key in sizes:
            continue
        if isinstance(node, yaml.MappingNode):
            _check_keys(node)
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _LimitError(
                    f"line {child.start_mark.line + 1}: a recursive alias (a value that "
                    "contains itself)"
                )
            if id(child) not in sizes:
                stack.append((child, False))


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's ``SafeLoader`` (no Python objects) that checks the composed document first:
    at most :data:`MAX_YAML_VALUES` values with every alias expanded, no recursive alias,
    no duplicated key."""

    max_values = MAX_YAML_VALUES

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node, self.max_values)
        return super().construct_document(node)


def _yaml_problem(error: BaseException, text: str) -> str:
    """One line for a YAML error: where, then what (PyYAML's messages span several lines)."""
    if isinstance(error, yaml.reader.ReaderError) and isinstance(error.character, int):
        line = text.count("\n", 0, error.position) + 1
        return f"line {line}: character #x{error.character:04x} is not allowed in YAML"
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        what = ": ".join(part for part in (error.context, error.problem) if part)
        if "constructor for the tag" in what:
            what += " (dmtl reads plain YAML: tags that build Python objects are refused)"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return f"{where}{what}"
    return " ".join(str(error).split())


def parse_yaml(text: str) -> Any:
    """Parse YAML text with :class:`BoundedLoader`; ``ValueError`` with one line if invalid."""
    try:
        return yaml.load(text, Loader=BoundedLoader)  # a SafeLoader: no Python objects
    except _LimitError as error:
        raise ValueError(str(error)) from None
    except yaml.YAMLError as error:
        raise ValueError(f"not valid YAML: {_yaml_problem(error, text)}") from None
    except RecursionError:
        raise ValueError("not valid YAML: nested too deeply") from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML; list items by index)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError([(item, "an override must look like key.sub=value")])
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(part.strip() for part in parts):
            raise ConfigError(
                [(item, "an override must look like key.sub=value (e.g. trainer.max_epochs=3)")]
            )
        try:
            value = parse_yaml(raw) if raw.strip() else None
        except ValueError as error:
            message = f"the value {raw!r} is {error}"
            raise ConfigError([(key.strip(), message)]) from None
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError([(".".join(parts[: i + 1]), "no such list item")])
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError([(".".join(parts[: i + 1]), "is not a section")])
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError([(key, "no such list item")])
            node[int(last)] = value
        else:
            node[last] = value
    return data


_URL_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]+:")
"""An object-store URL (``s3://...``, ``gs://...``); one letter would be a Windows drive."""


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make relative file paths relative to the config file's folder (``~`` is expanded)."""

    def fix(section: Mapping[str, Any] | None, keys: Sequence[str]) -> None:
        if not isinstance(section, dict):
            return
        for key in keys:
            value = section.get(key)
            if isinstance(value, str) and value:
                path = Path(value).expanduser()
                # abspath, not resolve(): a symbolic link loop is then reported by the
                # checks as one line, where resolve() raises
                section[key] = str(path) if path.is_absolute() else os.path.abspath(base / path)

    for source in data.get("sources") or []:
        fix(source, ("manifest", "root", "array", "shards_cache"))
        if isinstance(source, dict) and not _URL_SCHEME.match(str(source.get("shards") or "")):
            fix(source, ("shards",))  # a local folder; a URL stays as it is
    for edge in data.get("relatedness") or []:
        fix(edge, ("path",))
    fix(data.get("backbone"), ("weights",))
    fix(data.get("study"), ("groups",))


def validate_config(data: Mapping[str, Any], file: str | Path | None = None) -> Config:
    """Validate a config mapping; raise :class:`ConfigError` listing every problem."""
    try:
        config = Config.model_validate(dict(data))
    except ValidationError as error:
        problems = [(_dotted(e["loc"]), e["msg"]) for e in error.errors()]
        raise ConfigError(problems, file) from None
    problems = check_consistency(config)
    if problems:
        raise ConfigError(problems, file)
    return config


def check_consistency(config: Config) -> list[tuple[str, str]]:
    """Cross-field checks: names, files, edges against declared tasks."""
    problems = _duplicate_names("sources", [s.name for s in config.sources], "source")
    task_names = [t.name for t in config.tasks]
    problems += _duplicate_names("tasks", task_names, "task")
    problems += _source_problems(config)
    # With manifest sources only, the declared tasks are all the tasks there are, so edges
    # and weights can be checked here; built-in datasets and readers bring their own tasks
    # (checked when the experiment is built).
    all_declared = all(s.manifest is not None for s in config.sources)
    declared = {t.name: t for t in config.tasks}
    for i, task in enumerate(config.tasks):
        if all_declared and task.output_names() is None:
            field = {"categorical": "classes", "binary_set": "labels"}.get(task.type, "targets")
            problems.append(
                (f"tasks.{i}.{field}", f"task {task.name!r} of a manifest source needs its {field}")
            )
    problems += _edge_problems(config, declared, all_declared)
    problems += _input_problems(config, declared if all_declared else None)
    problems += registry_problems(config)
    weights = config.backbone.weights
    if weights is not None and (why := not_a_file(weights)) is not None:
        problems.append(("backbone.weights", _file_problem(weights, why)))
    problems += _group_problems(config.study)
    for name in config.method.task_weights:
        if all_declared and name not in task_names:
            problems.append((f"method.task_weights.{name}", "no such task"))
    return problems


def _group_problems(study: StudyConfig) -> list[tuple[str, str]]:
    """``study.groups`` is a file, and only with ``study.group_by``."""
    if study.groups is None:
        return []
    if study.group_by is None:
        return [("study.groups", "needs study.group_by (the column to read from the file)")]
    why = not_a_file(study.groups)
    return [] if why is None else [("study.groups", _file_problem(study.groups, why))]


def _file_problem(path: str | Path, why: str) -> str:
    """``file not found: PATH``, or ``PATH: a folder, not a file`` and the like."""
    return f"file not found: {path}" if why == "missing" else f"{path}: {why}"


def _duplicate_names(section: str, names: list[str], what: str) -> list[tuple[str, str]]:
    """One problem per repeated name in ``section``, at the repeat's index."""
    return [
        (f"{section}.{i}.name", f"duplicated {what} name {name!r}")
        for i, name in enumerate(names)
        if names.index(name) != i
    ]


def _source_problems(config: Config) -> list[tuple[str, str]]:
    """Files and folders a source names exist; a manifest has tasks; held-out splits."""
    problems: list[tuple[str, str]] = []
    for i, source in enumerate(config.sources):
        for key in ("manifest", "array"):
            path = getattr(source, key)
            if path is not None and (why := not_a_file(path)) is not None:
                problems.append((f"sources.{i}.{key}", _file_problem(path, why)))
        if source.root is not None and not Path(source.root).is_dir():
            problems.append((f"sources.{i}.root", f"folder not found: {source.root}"))
        if source.manifest is not None and not config.tasks:
            problems.append(
                (
                    f"sources.{i}.manifest",
                    "a manifest source needs the tasks declared under 'tasks'",
                )
            )
        problems += _held_out_problems(i, source)
    return problems


def _edge_problems(
    config: Config, declared: dict[str, TaskConfig], all_declared: bool
) -> list[tuple[str, str]]:
    """Relatedness edges: no self-loop or repeat, their file exists, their ends are tasks of a
    kind an edge can link (a categorical source; no regression target)."""
    problems: list[tuple[str, str]] = []
    seen_edges: set[tuple[str, str]] = set()
    for i, edge in enumerate(config.relatedness):
        if edge.source == edge.target:
            problems.append((f"relatedness.{i}", f"edge links task {edge.source!r} to itself"))
        if (edge.source, edge.target) in seen_edges:
            problems.append((f"relatedness.{i}", f"duplicated edge {edge.source}->{edge.target}"))
        seen_edges.add((edge.source, edge.target))
        if edge.path is not None and (why := not_a_file(edge.path)) is not None:
            problems.append((f"relatedness.{i}.path", _file_problem(edge.path, why)))
        if all_declared:
            for end in ("source", "target"):
                name = getattr(edge, end)
                if name not in declared:
                    problems.append(
                        (
                            f"relatedness.{i}.{end}",
                            f"no task {name!r}; declared tasks: {', '.join(declared) or 'none'}",
                        )
                    )
        src, dst = declared.get(edge.source), declared.get(edge.target)
        if src is not None and src.type != "categorical":
            problems.append(
                (
                    f"relatedness.{i}.source",
                    f"task {edge.source!r} must be categorical to be a source",
                )
            )
        if dst is not None and dst.type == "regression":
            problems.append(
                (
                    f"relatedness.{i}.target",
                    f"task {edge.target!r} is a regression task: regression tasks take part "
                    "in no relatedness edge (there is no such edge type yet)",
                )
            )
    return problems


def _held_out_problems(i: int, source: SourceConfig) -> list[tuple[str, str]]:
    """``split`` and ``allow_outside_root`` against the rest of a source's entry."""
    problems: list[tuple[str, str]] = []
    where = f"sources.{i}"
    if source.allow_outside_root and source.builtin is not None:
        problems.append(
            (f"{where}.allow_outside_root", "applies to image paths of manifest and reader "
             "sources, not to a built-in dataset")
        )
    if source.split is None:
        return problems
    if source.split_name() is None:
        problems.append(
            (f"{where}.split", f"{source.split!r} names no split: {where}.{source.split}_split "
             "is null")
        )
    if source.split != "train":
        if source.val_fraction > 0:
            problems.append(
                (f"{where}.val_fraction", f"source {source.name!r} is held out "
                 f"(split: {source.split}): it has no training rows to carve validation from")
            )
        if source.regime.name != "full":
            problems.append(
                (f"{where}.regime", f"source {source.name!r} is held out "
                 f"(split: {source.split}): a regime hides training labels, and it has none")
            )
    return problems


def _input_problems(
    config: Config,
    declared: Mapping[str, CategoricalTaskConfig | BinarySetTaskConfig | RegressionTaskConfig]
    | None,
) -> list[tuple[str, str]]:
    """Crops need a size; balanced sampling needs a categorical task (when tasks are known)."""
    problems: list[tuple[str, str]] = []
    for i, source in enumerate(config.sources):
        if source.input.crop_pct is not None and source.input.image_size is None:
            problems.append(
                (
                    f"sources.{i}.input.crop_pct",
                    "needs input.image_size (images are decoded at image_size / crop_pct, "
                    "then cropped to image_size)",
                )
            )
        if source.balance is not None and declared is not None:
            task = declared.get(source.balance)
            if task is None:
                problems.append(
                    (f"sources.{i}.balance", f"no task {source.balance!r}; declared tasks: "
                     f"{', '.join(declared) or 'none'}")
                )
            elif task.type != "categorical":
                problems.append(
                    (f"sources.{i}.balance", f"task {source.balance!r} is {task.type}; "
                     "class-balanced sampling needs a categorical task")
                )
    return problems


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (bounded, see the module doc), apply overrides, resolve relative
    paths, validate."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError([("", f"{path} is a folder, not a config file")])
    if not path.is_file():
        raise ConfigError([("", f"config file not found: {path}")])
    text = read_text(path, "config file", ConfigError, MAX_CONFIG_BYTES)
    try:
        data = parse_yaml(text) or {}
    except ValueError as error:
        raise ConfigError([("", str(error))], path) from None
    if not isinstance(data, dict):
        raise ConfigError([("", "the top level must be a mapping")], path)
    data = apply_overrides(data, overrides)
    _resolve_paths(data, path.parent)
    return validate_config(data, path)


REMOVED_INPUT_KEYS = ("crop_padding", "hflip")
"""``input`` keys of older versions (train-time augmentation), replaced by ``input.augment``."""


def saved_config(data: Mapping[str, Any]) -> Config:
    """A config a run saved (in a checkpoint), from this or an older dmtl version.

    A trained model does not need the training augmentation, so the removed
    :data:`REMOVED_INPUT_KEYS` are dropped (a config file that has them is refused, with
    what replaces them). Every other key is validated as usual.
    """
    data = copy.deepcopy(dict(data))
    for source in data.get("sources") or []:
        section = source.get("input") if isinstance(source, dict) else None
        if isinstance(section, dict):
            for key in REMOVED_INPUT_KEYS:
                section.pop(key, None)
    return Config.model_validate(data)


def dump_config(config: Config) -> str:
    """The resolved config as YAML (paths as strings)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
