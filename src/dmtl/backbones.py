"""Backbones: one factory, :func:`create_backbone`, over a registry of feature extractors.

Every backbone maps a batch ``(N, C, H, W)`` (or ``(N, F)`` for tabular
inputs, where ``image_size`` is ``None`` and ``in_channels`` is ``F``) to
features ``(N, D)``; the factory returns ``(module, D)``. Names:

- ``mlp``: flatten, then ``Linear -> ReLU -> Dropout`` per hidden width
  (``hidden=(256, 128)``, ``dropout=0.0``); ``D = hidden[-1]``.
- ``small_cnn``: blocks ``Conv3x3 -> BatchNorm -> ReLU`` of widths
  ``(*channels, feature_dim)`` (default ``(32, 64)`` then 128), a 2x2 max-pool
  after every block but the last, global average pooling, optional dropout;
  ``D = feature_dim``. Suits 8x8 digits and 28x28 grey images.
- ``timm:<model>``: ``timm.create_model(model, pretrained=..., num_classes=0,
  in_chans=in_channels, **kwargs)``; ``D`` = its pooled feature width. Models
  with a fixed input size take it as an option, e.g. ``img_size=32`` for a ViT.
- ``torchvision:<model>``: ``torchvision.models.get_model(model, weights=None or
  "DEFAULT", **kwargs)`` with its classifier replaced by ``Identity`` and its
  first convolution adapted to ``in_channels`` (each new input channel gets
  ``sum_rgb(W) / in_channels``, so a grey image gives the same response as in
  RGB); ``D`` by a dummy forward at ``image_size`` (224 when None).
- ``package.module:function``: a user factory, called as
  ``function(in_channels=..., image_size=..., pretrained=..., **kwargs)``,
  returning ``(module, D)``, or a module with an int ``feature_dim`` or
  ``num_features`` attribute, or a module whose ``D`` a dummy forward finds.

More names can be added with :func:`register_backbone`. timm and torchvision
are optional (``pip install 'dmtl[vision]'``) and imported only when used.

:func:`backbone_data_config` reads what a pretrained timm or torchvision model expects
of its inputs (mean, std, input size, centre-crop fraction), so the data pipeline can
prepare images as the weights were trained.

>>> backbone, dim = create_backbone("small_cnn", in_channels=1, image_size=8)
>>> dim, tuple(backbone(torch.zeros(2, 1, 8, 8)).shape)
(128, (2, 128))
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from dmtl.core.model import infer_feature_dim
from dmtl.errors import MissingDependencyError, SpecError
from dmtl.registry import (
    BACKBONE_FACTORY_PARAMETERS,
    BACKBONES,
    factory_problem,
    options_from_signature,
)

BackboneFactory = Callable[..., tuple[nn.Module, int]]
"""``factory(in_channels, image_size, pretrained, **kwargs) -> (module, feature_dim)``."""

VISION_EXTRA = "pip install 'dmtl[vision]'"

_REGISTRY: dict[str, BackboneFactory] = {}
_OPTIONS_FROM_CODE: set[str] = set()
"""Names whose options model was made here from the factory's signature."""


def register_backbone(
    name: str, overwrite: bool = False, options: type[BaseModel] | None = None
) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator adding ``factory(in_channels, image_size, pretrained, **kwargs)`` as ``name``.

    The name and its options are checked when a config is read through
    :data:`dmtl.registry.BACKBONES`: ``options`` is the pydantic model of its options (by
    default, one made from the factory's keyword arguments); a name declared in
    ``dmtl.registry`` keeps its model there.

    >>> @register_backbone("tiny_linear")
    ... def tiny_linear(in_channels, image_size, pretrained=False, width=4):
    ...     return nn.Sequential(nn.Flatten(), nn.LazyLinear(width)), width
    >>> "tiny_linear" in list_backbones()
    True
    >>> unregister_backbone("tiny_linear")
    """
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise SpecError(
            f"backbone name {name!r} must be a non-empty string without ':' "
            "(':' marks timm:, torchvision: and module:function names)"
        )

    def decorator(factory: BackboneFactory) -> BackboneFactory:
        if name in _REGISTRY and not overwrite:
            raise SpecError(f"backbone {name!r} is already registered (pass overwrite=True)")
        _REGISTRY[name] = factory
        if name not in BACKBONES or name in _OPTIONS_FROM_CODE:
            model = options or options_from_signature(factory, BACKBONE_FACTORY_PARAMETERS)
            BACKBONES.register(name, model, overwrite=True)
            _OPTIONS_FROM_CODE.add(name)
        return factory

    return decorator


def unregister_backbone(name: str) -> None:
    """Remove a registered backbone (``KeyError`` if unknown)."""
    del _REGISTRY[name]
    if name in _OPTIONS_FROM_CODE:
        BACKBONES.unregister(name)
        _OPTIONS_FROM_CODE.discard(name)


def list_backbones() -> list[str]:
    """Registered names, sorted; ``timm:<model>``, ``torchvision:<model>`` and
    ``package.module:function`` are accepted by :func:`create_backbone` as well."""
    return sorted(_REGISTRY)


def create_backbone(
    name: str,
    in_channels: int,
    image_size: int | None,
    pretrained: bool = False,
    weights: str | Path | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, int]:
    """Build backbone ``name`` (see the module docstring) and return ``(module, feature_dim)``.

    ``weights``: a local file of weights loaded instead of downloading pretrained ones
    (:func:`load_weights`). Pretrained weights that cannot be downloaded (no network,
    ``HF_HUB_OFFLINE=1`` without a cached copy) are one :class:`SpecError` saying so.

    >>> module, dim = create_backbone("mlp", in_channels=1, image_size=8, hidden=(32,))
    >>> dim
    32
    >>> create_backbone("resnet", in_channels=3, image_size=32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dmtl.errors.SpecError: unknown backbone 'resnet'; known names: mlp, small_cnn, ...
    """
    if not isinstance(in_channels, int) or in_channels < 1:
        raise SpecError(f"in_channels must be a positive int, got {in_channels!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise SpecError(f"image_size must be a positive int or None, got {image_size!r}")
    prefix, _, rest = name.partition(":")
    download = pretrained and weights is None
    if weights is not None and name not in _REGISTRY and prefix == "timm" and rest:
        # timm reads the file itself, drops the classifier and adapts the input channels
        kwargs["pretrained_cfg_overlay"] = {"file": str(_weights_file(name, weights))}
        pretrained, weights = True, None
    elif weights is not None and name not in _REGISTRY and prefix == "torchvision" and rest:
        kwargs["_weights"], pretrained, weights = weights, False, None
    try:
        module, dim = _create(name, in_channels, image_size, pretrained, kwargs)
    except Exception as error:
        if download and _is_download_error(error):
            raise SpecError(_download_message(name, error)) from None
        raise
    if weights is not None:
        load_weights(module, weights, name)
    return module, dim


def _create(
    name: str, in_channels: int, image_size: int | None, pretrained: bool, kwargs: dict[str, Any]
) -> tuple[nn.Module, int]:
    if name in _REGISTRY:
        factory = _REGISTRY[name]
        _check_options(name, factory, kwargs)
        module, dim = factory(in_channels, image_size, pretrained, **kwargs)
        return module, _checked_dim(name, dim)
    prefix, _, rest = name.partition(":")
    if prefix == "timm" and rest:
        return _create_timm(rest, in_channels, image_size, pretrained, **kwargs)
    if prefix == "torchvision" and rest:
        return _create_torchvision(rest, in_channels, image_size, pretrained, **kwargs)
    if rest:
        return _create_from_factory(name, in_channels, image_size, pretrained, **kwargs)
    raise SpecError(
        f"unknown backbone {name!r}; known names: {', '.join(list_backbones())}, "
        "timm:<model>, torchvision:<model>, package.module:function"
    )


def _weights_file(name: str, weights: str | Path) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise SpecError(f"backbone {name!r}: backbone.weights: file not found: {path}")
    return path


def load_weights(module: nn.Module, weights: str | Path, name: str = "backbone") -> None:
    """Load a state dict saved with ``torch.save`` (``weights_only``: no object is
    unpickled; a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped) into
    ``module``, strictly: every key must match (a mismatch is one line naming the first
    keys)."""
    path = _weights_file(name, weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, or one holding objects: refused
        message = " ".join(str(error).split())[:200]
        raise SpecError(f"backbone.weights: {path} is not a state dict ({message})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise SpecError(f"backbone.weights: {path} holds {type(state).__name__}, not a state dict")
    try:
        result = module.load_state_dict(dict(state), strict=False)
    except RuntimeError as error:  # shapes differ
        first = str(error).split("\n\t")[1:2] or [str(error)]
        raise SpecError(f"backbone.weights: {path} does not fit backbone {name!r}: "
                        f"{first[0].strip()}") from None
    if result.missing_keys or result.unexpected_keys:
        missing, unexpected = result.missing_keys[:3], result.unexpected_keys[:3]
        raise SpecError(
            f"backbone.weights: {path} does not fit backbone {name!r}: missing keys "
            f"{missing or 'none'}, unexpected keys {unexpected or 'none'}"
        )


def _is_download_error(error: BaseException) -> bool:
    """A failed download of pretrained weights: no network, a refused connection, the hub
    offline without a cached copy (checked along the chain of causes)."""
    seen: BaseException | None = error
    while seen is not None:
        module = type(seen).__module__.partition(".")[0]
        if isinstance(seen, (OSError, ConnectionError, TimeoutError)) or module in (
            "huggingface_hub", "httpx", "httpcore", "requests", "urllib3",
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _download_message(name: str, error: BaseException) -> str:
    reason = " ".join(str(error).split())[:160]
    return (
        f"backbone {name!r}: its pretrained weights could not be downloaded "
        f"({type(error).__name__}: {reason}); with no network, give backbone.weights: PATH "
        "(a local state dict, docs/config.md) or download them once where there is one "
        "(they are cached)"
    )


def _check_options(name: str, factory: BackboneFactory, options: dict[str, Any]) -> None:
    """Unknown options are an error that lists the accepted ones (not a deep TypeError)."""
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [n for n in parameters if n not in ("in_channels", "image_size", "pretrained")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise SpecError(
            f"backbone {name!r} has no option(s) {', '.join(unknown)} "
            f"(backbone.options); it accepts: {', '.join(accepted) or 'none'}"
        )


def _checked_dim(name: str, dim: object) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise SpecError(
            f"backbone {name!r}: feature dimension must be a positive int, got {dim!r}"
        )
    return dim


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise SpecError(f"backbone {name!r} has no pretrained weights; use pretrained=False")


def _input_shape(in_channels: int, image_size: int | None) -> tuple[int, ...]:
    return (in_channels,) if image_size is None else (in_channels, image_size, image_size)


# ---- built-in backbones ------------------------------------------------------------------------


@register_backbone("mlp")
def mlp(
    in_channels: int,
    image_size: int | None,
    pretrained: bool = False,
    hidden: Sequence[int] = (256, 128),
    dropout: float = 0.0,
    input_dim: int | None = None,
) -> tuple[nn.Module, int]:
    """Flatten, then ``Linear -> ReLU [-> Dropout]`` per width of ``hidden``; ``D = hidden[-1]``.

    The input width is ``input_dim`` or ``in_channels * image_size**2`` (``in_channels``
    alone when ``image_size`` is None).
    """
    _no_pretrained("mlp", pretrained)
    widths = [int(w) for w in hidden]
    if not widths or min(widths) < 1:
        raise SpecError(
            f"mlp: hidden must be a non-empty sequence of positive ints, got {hidden!r}"
        )
    if not 0.0 <= dropout < 1.0:
        raise SpecError(f"mlp: dropout must lie in [0, 1), got {dropout}")
    width = input_dim or math.prod(_input_shape(in_channels, image_size))
    layers: list[nn.Module] = [nn.Flatten()]
    for out in widths:
        layers += [nn.Linear(width, out), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = out
    return nn.Sequential(*layers), widths[-1]


@register_backbone("small_cnn")
def small_cnn(
    in_channels: int,
    image_size: int | None,
    pretrained: bool = False,
    channels: Sequence[int] = (32, 64),
    feature_dim: int = 128,
    dropout: float = 0.0,
) -> tuple[nn.Module, int]:
    """``Conv3x3 -> BN -> ReLU`` blocks of widths ``(*channels, feature_dim)``, 2x2 max-pool
    after each block but the last (ceil mode, so any size >= 1 works), global average pool."""
    _no_pretrained("small_cnn", pretrained)
    if image_size is None:
        raise SpecError("small_cnn needs images: give image_size")
    widths = [int(c) for c in channels] + [int(feature_dim)]
    if min(widths) < 1:
        raise SpecError(f"small_cnn: widths must be positive, got {widths}")
    if not 0.0 <= dropout < 1.0:
        raise SpecError(f"small_cnn: dropout must lie in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    width = in_channels
    for i, out in enumerate(widths):
        layers += [
            nn.Conv2d(width, out, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
        ]
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        width = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers), widths[-1]


# ---- optional libraries ------------------------------------------------------------------------


def _import_optional(package: str, backbone: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise MissingDependencyError(
            f"backbone {backbone!r} needs {package}, which is not installed; "
            f"install the vision extra: {VISION_EXTRA}"
        ) from error


def _create_timm(
    model: str, in_channels: int, image_size: int | None, pretrained: bool, **kwargs: Any
) -> tuple[nn.Module, int]:
    timm = _import_optional("timm", f"timm:{model}")
    offline = pretrained and "pretrained_cfg_overlay" not in kwargs and not _hub_reachable()
    try:
        with _hub_offline(offline):
            module = timm.create_model(
                model, pretrained=pretrained, num_classes=0, in_chans=in_channels, **kwargs
            )
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise SpecError(f"backbone 'timm:{model}': {error}") from error
        raise
    # timm >= 0.9.16 exposes the pooled width as head_hidden_size where it differs.
    dim = getattr(module, "head_hidden_size", None) or module.num_features
    return module, _checked_dim(f"timm:{model}", dim)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One connection to the Hugging Face hub (``HF_ENDPOINT``), so that without a network
    timm's download is tried once from the cache instead of minutes of retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection(
            (url.hostname or "huggingface.co", url.port or 443), timeout=timeout
        ):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """The hub in offline mode (its cache only) while the block runs, if ``offline``."""
    if not offline:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _create_torchvision(
    model: str, in_channels: int, image_size: int | None, pretrained: bool, **kwargs: Any
) -> tuple[nn.Module, int]:
    torchvision = _import_optional("torchvision", f"torchvision:{model}")
    name = f"torchvision:{model}"
    if model not in torchvision.models.list_models():
        raise SpecError(
            f"backbone {name!r}: torchvision has no model {model!r}; "
            "see torchvision.models.list_models()"
        )
    local = kwargs.pop("_weights", None)
    if model in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("init_weights", not pretrained)
    module = torchvision.models.get_model(
        model, weights="DEFAULT" if pretrained else None, **kwargs
    )
    if local is not None:  # the whole model's state dict, before its classifier is dropped
        load_weights(module, local, name)
    _drop_classifier(module, name)
    _adapt_first_conv(module, in_channels, name)
    dim = infer_feature_dim(module, (in_channels, image_size or 224, image_size or 224))
    return module, dim


def _drop_classifier(module: nn.Module, name: str) -> None:
    """Replace the final classification layer by ``Identity`` (the last ``Linear`` of the
    classifier attribute, else of the whole model; squeezenet's final 1x1 conv)."""
    for attribute in ("fc", "classifier", "head", "heads"):
        owner = getattr(module, attribute, None)
        if isinstance(owner, nn.Linear):
            setattr(module, attribute, nn.Identity())
            return
        if not isinstance(owner, nn.Module):
            continue
        if _replace_last(owner, nn.Linear):
            return
        if attribute == "classifier" and _replace_last(owner, nn.Conv2d):  # squeezenet
            return
    if not _replace_last(module, nn.Linear):
        raise SpecError(f"backbone {name!r}: found no final classifier layer to remove")


def _replace_last(owner: nn.Module, kind: type[nn.Module]) -> bool:
    found = [path for path, m in owner.named_modules() if path and isinstance(m, kind)]
    if not found:
        return False
    parent_path, _, child = found[-1].rpartition(".")
    parent = owner.get_submodule(parent_path) if parent_path else owner
    setattr(parent, child, nn.Identity())
    return True


def _adapt_first_conv(module: nn.Module, in_channels: int, name: str) -> None:
    """Give the first 3-channel ``Conv2d`` ``in_channels`` inputs, each with weights
    ``sum_rgb(W) / in_channels`` (timm's rule for one channel, generalised)."""
    if in_channels == 3:
        return
    found = [
        (path, m)
        for path, m in module.named_modules()
        if isinstance(m, nn.Conv2d) and m.in_channels == 3
    ]
    if not found:
        raise SpecError(f"backbone {name!r}: found no 3-channel input convolution to adapt")
    path, conv = found[0]
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        summed = conv.weight.sum(dim=1, keepdim=True)
        new.weight.copy_(summed.repeat(1, in_channels, 1, 1) * (1.0 / in_channels))
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias)
    parent_path, _, child = path.rpartition(".")
    parent = module.get_submodule(parent_path) if parent_path else module
    setattr(parent, child, new)


# ---- what pretrained weights expect of their inputs ---------------------------------------------


@dataclass(frozen=True)
class BackboneDataConfig:
    """The input a pretrained backbone was trained on.

    ``mean``/``std``: per RGB channel, on pixels scaled to [0, 1]; ``image_size``: the
    square side of its inputs; ``crop_pct``: evaluation resizes to
    ``floor(image_size / crop_pct)`` and takes the centre ``image_size`` crop;
    ``channels``: its input channels.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    crop_pct: float
    channels: int = 3


def backbone_data_config(
    name: str, pretrained: bool, options: Mapping[str, Any] | None = None
) -> BackboneDataConfig | None:
    """What pretrained ``timm:<m>`` / ``torchvision:<m>`` weights expect; ``None`` otherwise.

    timm: :func:`timm.data.resolve_model_data_config` of the model built on the meta
    device (no weights are read or downloaded); an ``img_size`` option overrides its
    input size. torchvision: the default weights' ``transforms()`` (``crop_size``,
    ``resize_size``, ``mean``, ``std``), with ``crop_pct = crop_size / resize_size``.
    """
    if not pretrained:
        return None
    prefix, _, model = name.partition(":")
    if prefix not in ("timm", "torchvision") or not model:
        return None
    key = json.dumps(dict(options or {}), sort_keys=True, default=str)
    return _cached_data_config(prefix, model, key)


@functools.lru_cache(maxsize=32)
def _cached_data_config(prefix: str, model: str, options_json: str) -> BackboneDataConfig:
    options = json.loads(options_json)
    if prefix == "timm":
        return _timm_data_config(model, options)
    return _torchvision_data_config(model)


def _timm_data_config(model: str, options: dict[str, Any]) -> BackboneDataConfig:
    timm = _import_optional("timm", f"timm:{model}")
    from timm.data import resolve_model_data_config

    try:
        with torch.device("meta"):
            module = timm.create_model(model, pretrained=False, num_classes=0, **options)
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise SpecError(f"backbone 'timm:{model}': {error}") from error
        raise
    config = resolve_model_data_config(module)
    channels, height, width = config["input_size"]
    size = options.get("img_size", (height, width))
    side = size if isinstance(size, int) else int(size[-1])
    return BackboneDataConfig(
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
        image_size=int(side),
        crop_pct=float(config.get("crop_pct") or 1.0),
        channels=int(channels),
    )


def _torchvision_data_config(model: str) -> BackboneDataConfig:
    torchvision = _import_optional("torchvision", f"torchvision:{model}")
    try:
        weights = torchvision.models.get_model_weights(model).DEFAULT
    except ValueError as error:
        raise SpecError(f"backbone 'torchvision:{model}': {error}") from error
    preset = weights.transforms()
    crop = int(preset.crop_size[0])
    resize = int(preset.resize_size[0])
    return BackboneDataConfig(
        mean=tuple(float(v) for v in preset.mean),
        std=tuple(float(v) for v in preset.std),
        image_size=crop,
        crop_pct=min(1.0, crop / resize),
    )


# ---- user factories ----------------------------------------------------------------------------


def _create_from_factory(
    name: str, in_channels: int, image_size: int | None, pretrained: bool, **kwargs: Any
) -> tuple[nn.Module, int]:
    module_path, _, function_name = name.partition(":")
    if not module_path.strip() or module_path.startswith("."):
        raise SpecError(
            f"backbone {name!r}: expected package.module:function, with an absolute module path"
        )
    try:
        python_module = importlib.import_module(module_path)
    except ImportError as error:
        raise SpecError(
            f"backbone {name!r}: cannot import module {module_path!r} ({error}); "
            f"known names: {', '.join(list_backbones())}, timm:<model>, torchvision:<model>"
        ) from error
    factory = getattr(python_module, function_name, None)
    if not callable(factory):
        raise SpecError(
            f"backbone {name!r}: module {module_path!r} has no callable {function_name!r}"
        )
    problem = factory_problem(factory, module_path, BACKBONE_FACTORY_PARAMETERS)
    if problem is not None:
        raise SpecError(f"backbone {name!r} is not a backbone factory: {problem}")
    arguments = {"in_channels": in_channels, "image_size": image_size, "pretrained": pretrained}
    _check_factory_call(name, factory, {**arguments, **kwargs})
    result = factory(**arguments, **kwargs)
    if isinstance(result, tuple):
        if len(result) != 2 or not isinstance(result[0], nn.Module):
            raise SpecError(f"backbone {name!r}: the factory must return (module, feature_dim)")
        return result[0], _checked_dim(name, result[1])
    if not isinstance(result, nn.Module):
        raise SpecError(
            f"backbone {name!r}: the factory returned {type(result).__name__}, "
            "expected an nn.Module or (module, feature_dim)"
        )
    for attribute in ("feature_dim", "num_features"):
        value = getattr(result, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return result, _checked_dim(name, value)
    return result, infer_feature_dim(result, _input_shape(in_channels, image_size))


def _check_factory_call(name: str, factory: Any, arguments: dict[str, Any]) -> None:
    """A factory whose signature does not take these keyword arguments is one clear error
    (naming the factory and the call), not a ``TypeError`` from inside the model build."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (a builtin): call it and see
        return
    try:
        signature.bind(**arguments)
    except TypeError as error:
        call = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
        raise SpecError(
            f"backbone {name!r}: the factory {name.partition(':')[2]}{signature} cannot be "
            f"called as {name.partition(':')[2]}({call}) ({error}); a backbone factory takes "
            "in_channels, image_size, pretrained and backbone.options as keyword arguments"
        ) from None


__all__ = [
    "VISION_EXTRA",
    "BackboneDataConfig",
    "BackboneFactory",
    "MissingDependencyError",
    "SpecError",
    "backbone_data_config",
    "create_backbone",
    "list_backbones",
    "register_backbone",
    "unregister_backbone",
]
