"""The run configuration: one YAML file, validated with pydantic, with dotted-key overrides.

Every problem is reported at once, each with its dotted path (``sources.0.regime.fraction``).
See ``configs/`` for examples and ``docs/config.md`` for every key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    from dmtl.core.tasks import Task

from dmtl.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, protected_namespaces=())


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

    def to_task(self) -> Task:
        """The task this entry declares (its names must be given)."""
        raise NotImplementedError

    def apply_options(self, task: Task) -> Task:
        """``task`` with this entry's training options (``balanced`` ones stay for the data)."""
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

    def to_task(self) -> Task:
        from dmtl.core.tasks import CategoricalTask

        return self.apply_options(CategoricalTask(self.name, self.classes or [], self.zero_shot))

    def apply_options(self, task: Task) -> Task:
        weight = None if self.class_weight in (None, "balanced") else self.class_weight
        return task.with_options(class_weight=weight, label_smoothing=self.label_smoothing)

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

    def to_task(self) -> Task:
        from dmtl.core.tasks import BinarySetTask

        return self.apply_options(BinarySetTask(self.name, self.labels or []))

    def apply_options(self, task: Task) -> Task:
        if isinstance(self.pos_weight, list):
            return task.with_options(pos_weight=self.pos_weight)
        return task

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

    def to_task(self) -> Task:
        from dmtl.core.tasks import RegressionTask

        low, high = self.range if self.range is not None else (None, None)
        return RegressionTask(self.name, self.targets or [], low, high, self.loss)

    def apply_options(self, task: Task) -> Task:
        return task.with_options(loss=self.loss)


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
    """A label-hiding regime (``dmtl.data.regimes``): ``name`` plus its parameters."""

    name: Literal["full", "disjoint", "scarce", "imbalance", "overlap"] = "full"
    params: dict[str, Any] = Field(default_factory=dict)


class InputConfig(_Strict):
    """How inputs are decoded and normalised; ``channels``/``image_size`` apply to images only.

    ``channels`` None keeps the first image's mode (grey or RGB); ``image_size`` None keeps
    the images' size (they must then all have the same). Train-time augmentation:
    ``crop_padding`` (pad, then random crop back) and ``hflip`` (random left-right flip).
    ``cache: memory`` decodes every image once, when the source is loaded, and keeps the
    pixels in memory (``N * C * H * W`` bytes as ``uint8``; a memory-mapped ``.npy`` is
    read into memory); refused above ``cache_max_gb`` or half the memory available.
    """

    channels: Literal[1, 3] | None = None
    image_size: int | None = Field(default=None, gt=0)
    mean: list[float] | None = None
    std: list[float] | None = None
    crop_padding: int = Field(default=0, ge=0)
    hflip: bool = False
    cache: Literal["none", "memory"] = "none"
    cache_max_gb: float = Field(default=8.0, gt=0)


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

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        kinds = [k for k in ("builtin", "manifest", "reader") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"give exactly one of 'builtin', 'manifest' or 'reader' (got {kinds or 'none'})"
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


class BackboneConfig(_Strict):
    """``name``: ``mlp``, ``small_cnn``, ``timm:<m>``, ``torchvision:<m>``, ``pkg.mod:function``."""

    name: str = "mlp"
    pretrained: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


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


class OptimConfig(_Strict):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0)
    schedule: Literal["none", "cosine"] = "cosine"


class EarlyStoppingConfig(_Strict):
    enabled: bool = False
    patience: int = Field(default=5, ge=1)


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


class OutputConfig(_Strict):
    dir: Path = Path("runs/run")
    tensorboard: bool = False
    checkpoint: Literal["last", "best"] = "last"


Variant = Literal["single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"]
ALL_VARIANTS: tuple[Variant, ...] = ("single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm")


class StudyConfig(_Strict):
    seeds: int = Field(default=3, ge=1)
    variants: list[Variant] = Field(default_factory=lambda: list(ALL_VARIANTS))
    co_annotation: Literal["soft", "hard"] = "soft"


class Config(_Strict):
    """A whole run: data, tasks, relatedness, model, method, optimiser, trainer, outputs, study."""

    name: str = "dmtl"
    tasks: list[TaskConfig] = Field(default_factory=list)
    sources: Annotated[list[SourceConfig], Field(min_length=1)]
    relatedness: list[EdgeConfig] = Field(default_factory=list)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)


def task_entry(config: Config, task: Task) -> _TaskConfigBase:
    """The config's entry for ``task``, or its kind's defaults when it has none."""
    for entry in config.tasks:
        if entry.name == task.name:
            return entry
    return TASK_CONFIGS[task.kind].model_validate({"name": task.name, "type": task.kind})


def _dotted(loc: Sequence[Any]) -> str:
    """``tasks.1.labels`` for pydantic's ``('tasks', 1, 'binary_set', 'labels')`` (the kind
    tag that picked the task's schema is left out)."""
    parts = [
        str(part)
        for i, part in enumerate(loc)
        if not (i >= 2 and loc[i - 2] == "tasks" and part in TASK_CONFIGS)
    ]
    return ".".join(parts)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML; list items by index)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError([(item, "an override must look like key.sub=value")])
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            problem = str(error).splitlines()[0]
            message = f"the value {raw!r} is not valid YAML ({problem})"
            raise ConfigError([(key.strip(), message)]) from None
        parts = key.strip().split(".")
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


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make relative file paths relative to the config file's folder."""

    def fix(section: Mapping[str, Any] | None, keys: Sequence[str]) -> None:
        if not isinstance(section, dict):
            return
        for key in keys:
            value = section.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                section[key] = str((base / value).resolve())

    for source in data.get("sources") or []:
        fix(source, ("manifest", "root", "array"))
    for edge in data.get("relatedness") or []:
        fix(edge, ("path",))


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
    problems: list[tuple[str, str]] = []
    names = [s.name for s in config.sources]
    for i, name in enumerate(names):
        if names.index(name) != i:
            problems.append((f"sources.{i}.name", f"duplicated source name {name!r}"))
    task_names = [t.name for t in config.tasks]
    for i, name in enumerate(task_names):
        if task_names.index(name) != i:
            problems.append((f"tasks.{i}.name", f"duplicated task name {name!r}"))
    for i, source in enumerate(config.sources):
        for key in ("manifest", "array"):
            path = getattr(source, key)
            if path is not None and not Path(path).is_file():
                problems.append((f"sources.{i}.{key}", f"file not found: {path}"))
        if source.root is not None and not Path(source.root).is_dir():
            problems.append((f"sources.{i}.root", f"folder not found: {source.root}"))
        if source.manifest is not None and not config.tasks:
            problems.append(
                (
                    f"sources.{i}.manifest",
                    "a manifest source needs the tasks declared under 'tasks'",
                )
            )
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
    seen_edges: set[tuple[str, str]] = set()
    for i, edge in enumerate(config.relatedness):
        if edge.source == edge.target:
            problems.append((f"relatedness.{i}", f"edge links task {edge.source!r} to itself"))
        if (edge.source, edge.target) in seen_edges:
            problems.append((f"relatedness.{i}", f"duplicated edge {edge.source}->{edge.target}"))
        seen_edges.add((edge.source, edge.target))
        if edge.path is not None and not Path(edge.path).is_file():
            problems.append((f"relatedness.{i}.path", f"file not found: {edge.path}"))
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
    for name in config.method.task_weights:
        if all_declared and name not in task_names:
            problems.append((f"method.task_weights.{name}", "no such task"))
    return problems


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply overrides, resolve relative paths, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([("", f"config file not found: {path}")])
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError([("", f"not valid YAML: {error}")], path) from None
    if not isinstance(data, dict):
        raise ConfigError([("", "the top level must be a mapping")], path)
    data = apply_overrides(data, overrides)
    _resolve_paths(data, path.parent)
    return validate_config(data, path)


def dump_config(config: Config) -> str:
    """The resolved config as YAML (paths as strings)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
