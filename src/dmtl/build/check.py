"""The whole config checked before anything runs: ``dmtl config check``, and the first
step of ``dmtl train`` and ``dmtl study``.

:func:`dmtl.config.load_config` has already checked the schema, every registered name and
its options (:mod:`dmtl.registry`), files and folders, and the cross-field rules. This
module adds what needs more than the config's text, still without loading any data:

- ``package.module:function`` names (``backbone.name``, ``input.augment``) are imported,
  from the config file's folder and the working directory (:func:`use_config_folder`);
  the object must be a function or class of the user's code whose signature names what
  the factory is called with (``in_channels, image_size, pretrained`` for a backbone;
  ``size, channels`` for an augmentation). A backbone factory defined in a module inside
  the config's folder or the working directory is then called once (``pretrained`` off)
  when the input's shape is known without loading data (a built-in dataset, or
  ``input.channels`` and ``input.image_size`` given) and must return an ``nn.Module`` or
  ``(module, feature_dim)``; nothing else is called;
- ``timm:<model>`` and ``torchvision:<model>`` name a model the library has;
- ``trainer.monitor`` names a metric that a run of the declared tasks logs;
- each of ``study.variants`` combines with the config's method (``dmtl study`` only).

torch is imported only where a check needs it (a library backbone, a user factory, a
monitor over declared tasks), so a config of built-in parts is checked in well under a
second.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dmtl.config import Config, load_config, variant_problems
from dmtl.errors import ConfigError
from dmtl.registry import (
    AUGMENT_FACTORY_PARAMETERS,
    AUGMENT_PRESETS,
    BACKBONE_FACTORY_PARAMETERS,
    BACKBONES,
    factory_problem,
    is_factory_name,
)

Problems = list[tuple[str, str]]

BUILTIN_INPUTS: dict[str, tuple[int, int]] = {"digits": (1, 8), "fashion_mnist": (1, 28)}
"""``(channels, side)`` of each built-in dataset's images."""


def use_config_folder(config_file: str | Path | None) -> None:
    """Let ``package.module:function`` names resolve from the config file's folder and the
    working directory (appended to ``sys.path`` once; worker processes inherit it)."""
    folders = [Path.cwd()]
    if config_file is not None:
        folders.insert(0, Path(config_file).expanduser().resolve().parent)
    for folder in folders:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))


def checked_config(
    path: str | Path, overrides: Sequence[str] = (), study: bool = False
) -> Config:
    """:func:`dmtl.config.load_config` plus :func:`check_config`; :class:`ConfigError`
    listing every problem (one line each)."""
    config = load_config(path, overrides)
    use_config_folder(path)
    problems = check_config(config, study=study, config_file=path)
    if problems:
        raise ConfigError(problems, path)
    return config


def check_config(
    config: Config, study: bool = False, config_file: str | Path | None = None
) -> Problems:
    """What :func:`load_config` cannot see from the text (see the module doc); with
    ``study``, also the study's variants."""
    folders = _user_folders(config_file)
    problems = _backbone_problems(config, folders)
    for i, source in enumerate(config.sources):
        augment = source.input.augment
        if augment not in AUGMENT_PRESETS:
            problem = _import_problem("augment", augment, AUGMENT_FACTORY_PARAMETERS)[1]
            if problem:
                problems.append((f"sources.{i}.input.augment", problem))
    problems += monitor_problems(config)
    if study:
        problems += variant_problems(config)
    return problems


def _user_folders(config_file: str | Path | None) -> list[Path]:
    folders = [Path.cwd().resolve()]
    if config_file is not None:
        folders.append(Path(config_file).expanduser().resolve().parent)
    return folders


def _import_problem(
    what: str, name: str, parameters: Sequence[str]
) -> tuple[Any, str | None]:
    """Import ``package.module:function``; ``(factory, None)`` or ``(None, why not)``."""
    module_name, _, function = name.partition(":")
    label = f"{what} {name!r}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        return None, (
            f"{label}: cannot import module {module_name!r} ({error}); modules are found "
            "in the config file's folder, the working directory and the installed packages"
        )
    except Exception as error:  # the user's module failed while being imported
        return None, f"{label}: importing {module_name!r} failed: {type(error).__name__}: {error}"
    factory = getattr(module, function, None)
    if factory is None:
        return None, f"{label}: module {module_name!r} has no {function!r}"
    problem = factory_problem(factory, module_name, parameters)
    if problem:
        kind = "an augmentation" if what == "augment" else f"a {what}"
        return None, f"{label} is not {kind} factory: {problem}"
    return factory, None


def _backbone_problems(config: Config, folders: Sequence[Path]) -> Problems:
    name = config.backbone.name
    if name in BACKBONES:
        return []
    prefix, _, model = name.partition(":")
    if prefix in ("timm", "torchvision") and model:
        problem = _library_model_problem(prefix, model)
        return [("backbone.name", problem)] if problem else []
    if not is_factory_name(name):  # load_config has refused it already
        return []
    factory, problem = _import_problem("backbone", name, BACKBONE_FACTORY_PARAMETERS)
    shape = _known_input(config)
    if problem is None and shape is not None and _defined_under(factory, folders):
        problem = _trial_build(name, factory, config, shape)
    return [("backbone.name", problem)] if problem else []


def _library_model_problem(library: str, model: str) -> str | None:
    if library == "timm" and model.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        return None  # a model timm finds on the hub or in a folder, when it is built
    try:
        module = importlib.import_module(library)
    except ImportError:
        return f"backbone '{library}:{model}' needs {library}: pip install 'dmtl[vision]'"
    known = list(module.list_models() if library == "timm" else module.models.list_models())
    if model in known or (library == "timm" and model.partition(".")[0] in known):
        return None
    close = difflib.get_close_matches(model, known, n=1)
    hint = f" (did you mean '{library}:{close[0]}'?)" if close else ""
    return f"backbone '{library}:{model}': {library} has no model {model!r}{hint}"


def _defined_under(factory: Any, folders: Sequence[Path]) -> bool:
    """Whether ``factory`` comes from a file inside one of ``folders`` (the user's code, not
    an installed package)."""
    module = sys.modules.get(getattr(factory, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if file is None:
        return False
    path = Path(file).resolve()
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return False
    return any(path.is_relative_to(folder) for folder in folders)


def _known_input(config: Config) -> tuple[int, int] | None:
    """``(channels, side)`` of the first source's images when known without loading it
    (``input.channels`` and ``input.image_size`` given, or a built-in dataset's)."""
    source = config.sources[0]
    channels, side = BUILTIN_INPUTS.get(str(source.builtin), (None, None))
    channels = source.input.channels or channels
    side = source.input.image_size or side
    return (channels, side) if channels is not None and side is not None else None


def _trial_build(
    name: str, factory: Any, config: Config, shape: tuple[int, int]
) -> str | None:
    """Call the user's factory once as training will (``pretrained`` off) and check what it
    returns: an ``nn.Module`` or ``(module, feature_dim)``."""
    from torch import nn

    arguments: dict[str, Any] = {
        "in_channels": shape[0],
        "image_size": shape[1],
        "pretrained": False,
        **config.backbone.options,
    }
    try:
        result = factory(**arguments)
    except Exception as error:
        return f"backbone {name!r}: calling the factory failed: {type(error).__name__}: {error}"
    module = result[0] if isinstance(result, tuple) and len(result) == 2 else result
    if not isinstance(module, nn.Module):
        return (
            f"backbone {name!r} returned {type(result).__name__}; a backbone factory returns an "
            "nn.Module or (module, feature_dim)"
        )
    return None


def monitor_problems(config: Config) -> Problems:
    """``trainer.monitor`` against the metrics a run of the config's tasks logs:
    ``val/loss``, ``val/selection``, ``val/<task>/<metric>``, when the tasks are known
    before the data loads (declared tasks of manifest sources, built-in datasets); a
    reader's tasks are checked once its data is read (``dmtl train`` checks again then)."""
    monitor = config.trainer.monitor
    if monitor is None and config.trainer.early_stopping.enabled:
        return [("trainer.early_stopping.enabled", "early stopping watches trainer.monitor, "
                 "which is not set (e.g. trainer.monitor: val/loss)")]
    if monitor is None or monitor in ("val/loss", "val/selection"):
        return []
    tasks = _known_tasks(config)
    if tasks is None:
        if monitor.startswith("val/"):
            return []
        return [("trainer.monitor", f"{monitor!r} is not a logged metric: names start "
                 "with 'val/' (val/loss, val/selection, val/<task>/<metric>)")]
    names, shown = ["val/loss", "val/selection"], ["val/loss", "val/selection"]
    for task in tasks:
        names += [f"val/{task.name}/{metric}" for metric in task.metric_names(True)]
        shown += [f"val/{task.name}/{metric}" for metric in task.metric_names(False)]
        per = sorted(set(task.metric_names(True)) - set(task.metric_names(False)))
        if per:
            shown.append(f"val/{task.name}/{per[0].split('/')[0]}/<{task.output_word}>")
    if monitor in names:
        return []
    close = difflib.get_close_matches(monitor, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return [("trainer.monitor", f"{monitor!r} is not a logged metric{hint}; valid: "
             f"{', '.join(shown)}")]


BUILTIN_TASKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "digits": ("dmtl.data.builtin.digits", ("DIGIT", "SHAPE", "INK", "MEASURES")),
    "fashion_mnist": (
        "dmtl.data.builtin.fashion_mnist", ("CATEGORY", "GROUP", "ATTRIBUTES", "PIXEL")
    ),
}
"""The tasks each built-in dataset brings: its module and the names of its task
constants (read without loading the data)."""


def _known_tasks(config: Config) -> list[Any] | None:
    """The tasks of the run when known before loading: declared tasks (manifest sources
    only) or built-in datasets' tasks; ``None`` when a reader brings its own."""
    if all(s.manifest is not None for s in config.sources) and config.tasks:
        from dmtl.core.tasks import task_from_dict

        return [task_from_dict(entry.identity()) for entry in config.tasks]
    if all(s.builtin in BUILTIN_TASKS for s in config.sources):
        tasks = {}
        for source in config.sources:
            module_name, constants = BUILTIN_TASKS[str(source.builtin)]
            module = importlib.import_module(module_name)
            tasks.update({t.name: t for t in (getattr(module, c) for c in constants)})
        return list(tasks.values())
    return None


__all__ = ["BUILTIN_TASKS", "check_config", "checked_config", "monitor_problems",
           "use_config_folder"]
