"""Registries of named parts, each entry with a typed options model: checked when a config
is read, before anything runs (a leaf: pydantic only, no torch).

A config names its parts (``backbone.name``, ``method.aggregator``, ``method.weighting``,
``method.guard``, ``sources[].regime.name``, ``sources[].builtin``, ``sources[].reader``)
and gives their options as a mapping (``backbone.options``, ``method.aggregator_options``,
``method.weighting_options``, ``method.guard_options``, ``regime.params``,
``sources[].options``). Each :class:`Registry` here maps a name to a pydantic model of its
options (``extra="forbid"``: an unknown option is refused, with the accepted ones), so a
misspelt name or option is one line naming the field when the config is read, not a
``TypeError`` deep in training. The factories that build the parts (``dmtl.core``,
``dmtl.backbones``, ``dmtl.data``) look up the same names; ``tests/test_registry.py`` keeps
every model's fields equal to its factory's keyword arguments.

A new entry declares its options where its factory lives or here::

    class MyOptions(Options):
        width: int = Field(default=8, gt=0)

    AGGREGATORS.register("my_aggregator", MyOptions)

>>> found = AGGREGATORS.problems("mgda", {"max_iter": 5}, "method.aggregator", "options")
>>> found[0][0]
'options.max_iter'
>>> found[0][1].split(";")[0]
"aggregator 'mgda' has no option 'max_iter' (did you mean 'max_iters'?)"
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator


class Options(BaseModel):
    """Base of every options model: unknown keys refused, numbers finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())


class OpenOptions(BaseModel):
    """Options passed on unchecked here (a library's own keyword arguments, e.g. timm's);
    the library checks them when the part is built."""

    model_config = ConfigDict(extra="allow")


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry:
    """Names of one kind of part, each with its options model.

    ``kind`` names the part in messages (``aggregator``); ``open_names`` describes names
    accepted besides the registered ones (checked elsewhere, e.g. ``timm:<model>``).
    """

    def __init__(self, kind: str, open_names: str = "") -> None:
        self.kind = kind
        self.open_names = open_names
        self._entries: dict[str, type[BaseModel]] = {}

    def register(
        self, name: str, options: type[BaseModel] | None = None, overwrite: bool = False
    ) -> None:
        """Add ``name`` with its options model (``None``: it takes no option)."""
        if name in self._entries and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = options or NoOptions

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def options_model(self, name: str) -> type[BaseModel]:
        return self._entries[name]

    def unknown_name(self, name: str) -> str:
        """The message for a name that is not registered."""
        known = ", ".join(self.names()) + (f", {self.open_names}" if self.open_names else "")
        return f"unknown {self.kind} {name!r}{_hint(name, self.names())}; expected one of: {known}"

    def problems(
        self, name: str, options: Mapping[str, Any] | None, name_at: str, options_at: str
    ) -> list[tuple[str, str]]:
        """``(dotted path, message)`` for an unknown name or each bad option (none if fine)."""
        if name not in self._entries:
            return [(name_at, self.unknown_name(name))]
        return options_problems(
            self._entries[name], options or {}, f"{self.kind} {name!r}", options_at
        )

    def validate(self, name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The options as given, typed by the model (``ValueError``, one line, if bad)."""
        found = self.problems(name, options, self.kind, f"{self.kind} options")
        if found:
            raise ValueError(f"{found[0][0]}: {found[0][1]}")
        model = self._entries[name].model_validate(dict(options or {}))
        return model.model_dump(exclude_unset=True)


def options_problems(
    model: type[BaseModel], options: Mapping[str, Any], what: str, at: str
) -> list[tuple[str, str]]:
    """Validate ``options`` with ``model``; one ``(at.key, message)`` per problem."""
    if not isinstance(options, Mapping):
        return [(at, f"expected a mapping of {what}'s options, got {options!r}")]
    try:
        model.model_validate(dict(options))
    except ValidationError as error:
        accepted = list(model.model_fields)
        found = []
        for item in error.errors():
            loc = ".".join(str(p) for p in item["loc"])
            where = f"{at}.{loc}" if loc else at
            if item["type"] == "extra_forbidden":
                key = str(item["loc"][0])
                message = (
                    f"{what} has no option {key!r}{_hint(key, accepted)}; "
                    f"options: {', '.join(accepted) or 'none'}"
                )
            else:
                message = f"{what}: {item['msg'].removeprefix('Value error, ')}"
            found.append((where, message))
        return found
    return []


class NoOptions(Options):
    """An entry that takes no option."""


def options_from_signature(function: Any, skip: Sequence[str] = ()) -> type[BaseModel]:
    """An options model from a factory's keyword arguments (types unchecked, names
    checked; a ``**kwargs`` factory takes any option): for entries registered in code
    without a model of their own."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return OpenOptions
    fields: dict[str, Any] = {
        name: (Any, ... if p.default is p.empty else p.default)
        for name, p in parameters.items()
        if name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    name = getattr(function, "__name__", "factory")
    return create_model(f"{name}_options", __base__=Options, **fields)


# ---- backbones ---------------------------------------------------------------------------------


class MlpOptions(Options):
    """``mlp``: hidden widths and dropout."""

    hidden: list[int] = Field(default=[256, 128], min_length=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    input_dim: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _positive(self) -> MlpOptions:
        if any(width < 1 for width in self.hidden):
            raise ValueError(f"hidden widths must be >= 1, got {self.hidden}")
        return self


class SmallCnnOptions(Options):
    """``small_cnn``: block widths, feature width, dropout."""

    channels: list[int] = Field(default=[32, 64])
    feature_dim: int = Field(default=128, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _positive(self) -> SmallCnnOptions:
        if any(width < 1 for width in self.channels):
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        return self


BACKBONE_PREFIXES = ("timm", "torchvision")
"""``prefix:<model>`` backbone names; their options go to the library unchecked here."""

BACKBONES = Registry(
    "backbone", "timm:<model>, torchvision:<model>, package.module:function"
)
BACKBONES.register("mlp", MlpOptions)
BACKBONES.register("small_cnn", SmallCnnOptions)


def is_factory_name(name: str) -> bool:
    """``package.module:function`` (identifiers only)."""
    module, _, function = name.partition(":")
    return bool(module) and bool(function) and all(
        part.isidentifier() for part in [*module.split("."), function]
    )


BACKBONE_FACTORY_PARAMETERS = ("in_channels", "image_size", "pretrained")
"""What a ``package.module:function`` backbone factory must name in its signature."""

AUGMENT_FACTORY_PARAMETERS = ("size", "channels")
"""What a ``package.module:factory`` of ``input.augment`` must name in its signature."""


def factory_problem(factory: object, module: str, parameters: Sequence[str]) -> str | None:
    """Why ``factory`` (found in ``module``) is not a factory taking ``parameters`` by
    keyword, or ``None``. It must be a Python function or class outside the standard
    library whose signature names each of ``parameters`` (a ``**kwargs`` alone does not
    do: ``subprocess:run`` takes anything). Nothing is called.

    >>> import subprocess
    >>> factory_problem(subprocess.run, "subprocess", BACKBONE_FACTORY_PARAMETERS)
    "module 'subprocess' is part of Python's standard library, not a factory of yours"
    """
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        return f"module {module!r} is part of Python's standard library, not a factory of yours"
    if not (inspect.isfunction(factory) or inspect.isclass(factory)):
        return f"{type(factory).__name__} {factory!r} is not a Python function or class"
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return "its signature cannot be read"
    named = {
        name for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    missing = [name for name in parameters if name not in named]
    if missing:
        return (
            f"its signature {signature} does not name {', '.join(missing)}: a factory here "
            f"is function({', '.join(parameters)}, **options)"
        )
    return None


def backbone_problems(
    name: str, options: Mapping[str, Any] | None, at: str = "backbone"
) -> list[tuple[str, str]]:
    """A registered name with valid options, ``timm:<m>``/``torchvision:<m>`` (options are
    the library's) or ``package.module:function`` (checked by ``dmtl config check``)."""
    prefix, _, rest = name.partition(":")
    if name not in BACKBONES and (prefix in BACKBONE_PREFIXES and rest):
        return [] if isinstance(options, Mapping) else [(f"{at}.options", "expected a mapping")]
    if name not in BACKBONES and is_factory_name(name):
        return [] if isinstance(options, Mapping) else [(f"{at}.options", "expected a mapping")]
    return BACKBONES.problems(name, options, f"{at}.name", f"{at}.options")


# ---- how per-task losses become one update -----------------------------------------------------


class ProjectorOptions(Options):
    """``upgrad``, ``dualproj``: the quadratic projector's regularisation."""

    norm_eps: float = Field(default=1e-4, ge=0.0)
    reg_eps: float = Field(default=1e-4, ge=0.0)


class MgdaOptions(Options):
    epsilon: float = Field(default=1e-3, gt=0.0)
    max_iters: int = Field(default=100, ge=1)


class AlignedMtlOptions(Options):
    scale_mode: Literal["min", "median", "rmse"] = "min"


class CagradOptions(Options):
    c: float = Field(ge=0.0)


class FairgradOptions(Options):
    alpha: float = Field(gt=0.0)
    max_iters: int | None = Field(default=None, ge=1)


AGGREGATORS = Registry("aggregator")
"""TorchJD's aggregators (``dmtl.core.aggregation.AGGREGATORS``). Arguments that take a
tensor or a function (``config``'s ``pref_vector``, ``graddrop``'s ``f`` and ``leak``) cannot
be written in a config and are left at TorchJD's defaults."""
_AGGREGATOR_OPTIONS: dict[str, type[BaseModel] | None] = {
    "sum": None, "mean": None, "upgrad": ProjectorOptions, "dualproj": ProjectorOptions,
    "mgda": MgdaOptions, "pcgrad": None, "imtl_g": None, "aligned_mtl": AlignedMtlOptions,
    "config": None, "graddrop": None, "random": None, "cagrad": CagradOptions,
    "fairgrad": FairgradOptions,
}
for _name, _options in _AGGREGATOR_OPTIONS.items():
    AGGREGATORS.register(_name, _options)


class UncertaintyOptions(Options):
    init_log_variance: float | dict[str, float] = 0.0


class DwaOptions(Options):
    temperature: float = Field(default=2.0, gt=0.0)


WEIGHTINGS = Registry("loss weighting")
WEIGHTINGS.register("fixed")  # the objective's own sum, weighted by method.task_weights
WEIGHTINGS.register("uncertainty", UncertaintyOptions)
WEIGHTINGS.register("dwa", DwaOptions)


class GuardOptions(Options):
    """``method.guard_options`` (``dmtl.core.guard.RelatednessGuard``)."""

    floor: float = Field(default=1.0 / 16, gt=0.0, le=1.0)
    margin: float = Field(default=0.0, ge=0.0, lt=1.0)
    max_validation: int = Field(default=512, ge=1)


# ---- label regimes -----------------------------------------------------------------------------

Groups = list[list[str]]


class DisjointParams(Options):
    groups: Groups | None = None
    proportions: list[float] | None = None


class ScarceParams(Options):
    task: str
    fraction: float = Field(gt=0.0, le=1.0)
    others_on: Literal["rest", "all"] = "rest"


class ImbalanceParams(Options):
    ratio: dict[str, float]
    groups: Groups | None = None


class OverlapParams(Options):
    fraction: float = Field(ge=0.0, le=1.0)
    groups: Groups | None = None
    proportions: list[float] | None = None


class InnerRegime(Options):
    """``unlabelled``'s ``then``: the regime of the labelled rest."""

    name: Literal["full", "disjoint", "scarce", "imbalance", "overlap"]
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _params(self) -> InnerRegime:
        found = REGIMES.problems(self.name, self.params, "name", "params")
        if found:
            raise ValueError("; ".join(f"then.{where}: {message}" for where, message in found))
        return self


class UnlabelledParams(Options):
    fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    then: InnerRegime | None = None


REGIMES = Registry("regime")
REGIMES.register("full")
REGIMES.register("disjoint", DisjointParams)
REGIMES.register("scarce", ScarceParams)
REGIMES.register("imbalance", ImbalanceParams)
REGIMES.register("overlap", OverlapParams)
REGIMES.register("unlabelled", UnlabelledParams)


# ---- sources: built-in datasets and readers ----------------------------------------------------


class DigitsOptions(Options):
    num_test: int = Field(default=360, ge=1)
    split_seed: int = 0
    measures: bool = False


class FashionMnistOptions(Options):
    root: str | None = None
    splits: list[Literal["train", "test"]] = Field(default=["train", "test"], min_length=1)
    limit: int | None = Field(default=None, ge=1)


BUILTINS = Registry("built-in dataset")
BUILTINS.register("digits", DigitsOptions)
BUILTINS.register("fashion_mnist", FashionMnistOptions)


class AffectnetOptions(Options):
    contempt: bool = False
    validation_split: str = "val"
    image_dir: str | None = None


class Affwild2Options(Options):
    tasks: list[str] = ["expression", "au"]
    sets: list[str] | None = None
    annotations: str | None = None
    image_dir: str | list[str] | None = None


class Bp4dOptions(Options):
    aus: list[int] | None = None
    au_dir: str = "AUCoding/AU_OCC"
    image_template: str | None = None
    val_subjects: list[str] = []
    test_subjects: list[str] = []


class CelebaOptions(Options):
    tasks: list[Literal["identity", "attributes"]] = ["identity", "attributes"]
    image_dir: str | None = None


class CubOptions(Options):
    min_certainty: int | None = None
    attributes: bool = True
    knowledge: bool = True


class DeepfashionOptions(Options):
    attributes: bool = True
    zero_as: str = "missing"
    image_prefix: str | None = None
    drop_empty_categories: bool = False


class EmotionetOptions(Options):
    annotations: Literal["manual", "automatic"] = "manual"
    aus: list[int] | None = None
    image_template: str = "images/{name}"


class DisfaOptions(Options):
    threshold: int = Field(default=2, ge=0)
    aus: list[int] | None = None
    image_template: str | None = None
    label_dir: str = "ActionUnit_Labels"
    val_subjects: list[str] = []
    test_subjects: list[str] = []


class RafdbOptions(Options):
    aligned: bool = True
    test_split: str = "test"


class UtZapposOptions(Options):
    category_level: str = "category"
    attribute_columns: list[str] | None = None
    min_count: int = Field(default=1, ge=1)
    image_dir: str = "ut-zap50k-images"
    escape_trailing_dots: bool = True
    check_cid: bool = True


READERS = Registry("reader")
_READER_OPTIONS: dict[str, type[BaseModel]] = {
    "affectnet": AffectnetOptions, "affwild2": Affwild2Options, "bp4d": Bp4dOptions,
    "celeba": CelebaOptions, "cub": CubOptions, "deepfashion": DeepfashionOptions,
    "disfa": DisfaOptions, "emotionet": EmotionetOptions, "rafdb": RafdbOptions,
    "ut_zappos": UtZapposOptions,
}
for _name, _reader_options in _READER_OPTIONS.items():
    READERS.register(_name, _reader_options)


AUGMENT_PRESETS = ("none", "light", "standard", "randaugment")
"""The train-time augmentation presets of ``input.augment`` (``dmtl.data.transforms``);
``package.module:factory`` is accepted too."""


__all__ = [
    "AGGREGATORS",
    "AUGMENT_PRESETS",
    "BACKBONES",
    "BUILTINS",
    "READERS",
    "REGIMES",
    "WEIGHTINGS",
    "GuardOptions",
    "NoOptions",
    "OpenOptions",
    "Options",
    "Registry",
    "backbone_problems",
    "factory_problem",
    "is_factory_name",
    "options_from_signature",
    "options_problems",
]
