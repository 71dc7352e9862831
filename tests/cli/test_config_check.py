"""``dmtl config check``: one front door. Every bad name, option, file, factory, monitor
name and study variant is one line naming the field (exit 2), before any data loads;
``dmtl train`` and ``dmtl study`` refuse the same configs before loading data."""

from __future__ import annotations

import copy
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from dmtl.cli import app
from dmtl.registry import AGGREGATORS, BUILTINS, READERS, REGIMES, WEIGHTINGS

Invoke = Callable[..., Result]


def run_cli(*args: str | Path, code: int = 0) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result

BASE: dict[str, Any] = {
    "sources": [{"name": "d", "builtin": "digits"}],
    "backbone": {"name": "mlp", "options": {"hidden": [8]}},
    "trainer": {"max_epochs": 1},
}


@pytest.fixture(autouse=True)
def no_data_loading(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to load data fails the test: the check must come first."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("data was loaded before the config was checked")

    import dmtl.build.data as pipeline
    import dmtl.data.builtin as builtin

    monkeypatch.setattr(pipeline, "build_experiment", refuse)
    monkeypatch.setattr(builtin, "load_builtin", refuse)
    yield


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set ``a.b.0.c`` to ``value`` in a config mapping (sections made as needed)."""

    def apply(data: dict[str, Any]) -> None:
        node: Any = data
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _source(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return _edit("sources.0", {"name": "d", **fields})


# (case id, edits, the field the one line must name, a fragment of what it says)
Case = tuple[str, list[Callable[[dict[str, Any]], None]], str, str]

CASES: list[Case] = [
    ("backbone-name", [_edit("backbone.name", "mlpp")], "backbone.name", "did you mean 'mlp'"),
    ("backbone-option", [_edit("backbone.options", {"hiden": [8]})], "backbone.options.hiden",
     "did you mean 'hidden'"),
    ("backbone-option-type", [_edit("backbone.options", {"hidden": "wide"})],
     "backbone.options.hidden", "mlp"),
    ("small-cnn-option", [_edit("backbone.name", "small_cnn"),
                          _edit("backbone.options", {"width": 3})],
     "backbone.options.width", "feature_dim"),
    ("small-cnn-dropout", [_edit("backbone.name", "small_cnn"),
                           _edit("backbone.options", {"dropout": 1.5})],
     "backbone.options.dropout", "less than 1"),
    ("backbone-subprocess", [_edit("backbone.name", "subprocess:run")], "backbone.name",
     "not a backbone factory"),
    ("backbone-os-system", [_edit("backbone.name", "os:system")], "backbone.name",
     "standard library"),
    ("backbone-missing-module", [_edit("backbone.name", "no_such_module_xyz:net")],
     "backbone.name", "cannot import module"),
    ("backbone-timm-unknown", [_edit("backbone.name", "timm:resnet_does_not_exist")],
     "backbone.name", "timm has no model"),
    ("backbone-torchvision-unknown", [_edit("backbone.name", "torchvision:resnet19")],
     "backbone.name", "torchvision has no model"),
    ("backbone-weights-missing", [_edit("backbone.weights", "no/such/weights.pt")],
     "backbone.weights", "file not found"),
    ("aggregator-name", [_edit("method.aggregator", "upgard")], "method.aggregator",
     "did you mean 'upgrad'"),
    ("aggregator-level", [_edit("method.aggregator", "upgrad"),
                          _edit("method.aggregator_options", {"level": "features"})],
     "method.aggregator_options.level", "has no option 'level'"),
    ("aggregator-sum-option", [_edit("method.aggregator_options", {"x": 1})],
     "method.aggregator_options.x", "options: none"),
    ("aggregator-mgda-type", [_edit("method.aggregator", "mgda"),
                              _edit("method.aggregator_options", {"max_iters": "many"})],
     "method.aggregator_options.max_iters", "integer"),
    ("aggregator-cagrad-missing", [_edit("method.aggregator", "cagrad")],
     "method.aggregator_options.c", "Field required"),
    ("aggregator-aligned-mode", [_edit("method.aggregator", "aligned_mtl"),
                                 _edit("method.aggregator_options", {"scale_mode": "max"})],
     "method.aggregator_options.scale_mode", "'min'"),
    ("weighting-name", [_edit("method.weighting", "gradnorm")], "method.weighting",
     "unknown loss weighting"),
    ("weighting-option", [_edit("method.weighting", "dwa"),
                          _edit("method.weighting_options", {"temp": 2})],
     "method.weighting_options.temp", "options: temperature"),
    ("weighting-dwa-zero", [_edit("method.weighting", "dwa"),
                            _edit("method.weighting_options", {"temperature": 0})],
     "method.weighting_options.temperature", "greater than 0"),
    ("weighting-fixed-option", [_edit("method.weighting_options", {"weights": {"a": 1}})],
     "method.weighting_options.weights", "options: none"),
    ("uw-with-upgrad", [_edit("method.weighting", "uncertainty"),
                        _edit("method.aggregator", "upgrad")], "method", "cannot be combined"),
    ("guard-option", [_edit("method.guard_options", {"flor": 0.1})],
     "method.guard_options.flor", "did you mean 'floor'"),
    ("guard-floor", [_edit("method.guard_options", {"floor": 0})],
     "method.guard_options.floor", "greater than 0"),
    ("regime-name", [_source(builtin="digits", regime={"name": "scarse"})],
     "sources.0.regime.name", "did you mean 'scarce'"),
    ("regime-param", [_source(builtin="digits", regime={"name": "scarce", "params": {
        "task": "digit", "fraction": 0.1, "fractoin": 1}})],
     "sources.0.regime.params.fractoin", "has no option"),
    ("regime-missing", [_source(builtin="digits", regime={"name": "scarce"})],
     "sources.0.regime.params.task", "Field required"),
    ("regime-fraction", [_source(builtin="digits", regime={"name": "overlap",
                                                            "params": {"fraction": 2}})],
     "sources.0.regime.params.fraction", "less than or equal to 1"),
    ("regime-others-on", [_source(builtin="digits", regime={"name": "scarce", "params": {
        "task": "digit", "fraction": 0.1, "others_on": "none"}})],
     "sources.0.regime.params.others_on", "'rest'"),
    ("regime-then", [_source(builtin="digits", regime={"name": "unlabelled", "params": {
        "then": {"name": "scarce", "params": {"task": "digit"}}}})],
     "sources.0.regime.params.then", "fraction"),
    ("builtin-name", [_source(builtin="digitz")], "sources.0.builtin", "did you mean 'digits'"),
    ("builtin-option", [_source(builtin="digits", options={"num_tset": 3})],
     "sources.0.options.num_tset", "did you mean 'num_test'"),
    ("builtin-option-type", [_source(builtin="digits", options={"measures": "maybe"})],
     "sources.0.options.measures", "boolean"),
    ("reader-name", [_source(reader="rafbd", root=".")], "sources.0.reader",
     "did you mean 'rafdb'"),
    ("reader-option", [_source(reader="rafdb", root=".", options={"algned": True})],
     "sources.0.options.algned", "did you mean 'aligned'"),
    ("reader-root-missing", [_source(reader="rafdb", root="no/such/folder")],
     "sources.0.root", "folder not found"),
    ("augment-name", [_source(builtin="digits", input={"augment": "heavy"})],
     "sources.0.input.augment", "expected one of"),
    ("augment-factory", [_source(builtin="digits", input={"augment": "subprocess:run"})],
     "sources.0.input.augment", "not an augmentation factory"),
    ("lr-inf", [_edit("optim.lr", float("inf"))], "optim.lr", "finite"),
    ("lr-nan", [_edit("optim.lr", float("nan"))], "optim.lr", "finite"),
    ("lr-zero", [_edit("optim.lr", 0)], "optim.lr", "greater than 0"),
    ("weight-decay-inf", [_edit("optim.weight_decay", float("inf"))], "optim.weight_decay",
     "finite"),
    ("lambda-dm-inf", [_edit("method.lambda_dm", float("inf"))], "method.lambda_dm", "finite"),
    ("clip-nan", [_edit("trainer.gradient_clip_val", float("nan"))],
     "trainer.gradient_clip_val", "finite"),
    ("monitor", [_edit("trainer.monitor", "val/digit/acc")], "trainer.monitor",
     "did you mean 'val/digit/accuracy'"),
    ("monitor-task", [_edit("trainer.monitor", "val/digits/accuracy")], "trainer.monitor",
     "not a logged metric"),
    ("monitor-prefix", [_edit("trainer.monitor", "loss")], "trainer.monitor",
     "not a logged metric"),
    ("early-stopping-without-monitor", [_edit("trainer.early_stopping", {"enabled": True})],
     "trainer.early_stopping.enabled", "trainer.monitor"),
    ("variant-uw-with-upgrad", [_edit("method.aggregator", "upgrad")], "study.variants.7",
     "'mtl+ca+dm+uw'"),
    ("variant-upgrad-with-mgda-options", [
        _edit("method.aggregator", "mgda"), _edit("method.aggregator_options", {"max_iters": 5})],
     "study.variants.6", "'mtl+ca+dm+upgrad'"),
    ("variant-name", [_edit("study.variants", ["mtl", "mtl+uw"])], "study.variants.1", "mtl"),
    ("unknown-key", [_edit("optim.learning_rate", 0.1)], "optim.learning_rate",
     "Extra inputs"),
    ("logger-name", [_edit("output.loggers", ["csv", "neptune"])], "output.loggers.1",
     "tensorboard"),
    ("edge-file-missing", [_edit("relatedness", [{"source": "digit", "target": "shape",
                                                  "kind": "table", "path": "no.csv"}])],
     "relatedness.0.path", "file not found"),
]


def _write(folder: Path, data: dict[str, Any], name: str = "c.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _one_error(output: str) -> str:
    """The output is one ``error:`` line, or ``error: N problems in FILE:`` and one line per
    problem; all of it, as one string."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), output
    if len(lines) > 1:
        count = int(lines[0].removeprefix("error: ").split()[0])
        assert len(lines) == count + 1 and "problems in" in lines[0], output
    return "\n".join(lines)


def test_there_are_at_least_40_bad_configs() -> None:
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("edits", "field", "fragment"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_config_is_one_line_naming_the_field(
    tmp_path: Path, edits: list[Callable[[dict[str, Any]], None]], field: str, fragment: str
) -> None:
    data = copy.deepcopy(BASE)
    for edit in edits:
        edit(data)
    result = run_cli("config", "check", _write(tmp_path, data), code=2)
    text = _one_error(result.output)
    line = next((line for line in text.splitlines() if f"{field}: " in line), "")
    assert fragment in line, text


@pytest.mark.parametrize("registry", [AGGREGATORS, WEIGHTINGS, REGIMES, BUILTINS, READERS],
                         ids=lambda r: r.kind)
def test_every_registry_entry_refuses_an_unknown_option(tmp_path: Path, registry: Any) -> None:
    """Each name of each registry, with an option it does not have: one line naming it."""
    for name in registry.names():
        data = copy.deepcopy(BASE)
        where = _registry_edit(registry, name, data)
        result = run_cli("config", "check", _write(tmp_path, data), code=2)
        line = _one_error(result.output)
        assert f"{where}.no_such_option:" in line, (name, line)
        assert f"{registry.kind} {name!r} has no option 'no_such_option'" in line, line


def _registry_edit(registry: Any, name: str, data: dict[str, Any]) -> str:
    """Use ``name`` with a bad option in ``data``; the dotted path of its options."""
    bad = {"no_such_option": 1}
    method = data.setdefault("method", {})
    if registry is AGGREGATORS:
        method["aggregator"], method["aggregator_options"] = name, bad
        return "method.aggregator_options"
    if registry is WEIGHTINGS:
        method["weighting"], method["weighting_options"] = name, bad
        return "method.weighting_options"
    if registry is REGIMES:
        data["sources"][0]["regime"] = {"name": name, "params": bad}
        return "sources.0.regime.params"
    if registry is BUILTINS:
        data["sources"][0] = {"name": "d", "builtin": name, "options": bad}
        data.setdefault("trainer", {}).pop("monitor", None)
        return "sources.0.options"
    data["sources"][0] = {"name": "d", "reader": name, "root": ".", "options": bad}
    return "sources.0.options"


def test_a_good_config_passes_fast_without_torch(tmp_path: Path) -> None:
    """A config of built-in parts is checked without importing torch (in a fresh process)."""
    import subprocess

    path = _write(tmp_path, BASE)
    code = (
        "import sys, time; from dmtl.build.check import checked_config; "
        "t = time.perf_counter(); checked_config(sys.argv[1], study=True); "
        "print(time.perf_counter() - t, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[1] == "False", out  # torch was not imported to check it


def test_config_check_says_ok(cli: Invoke, tmp_path: Path) -> None:
    result = cli("config", "check", _write(tmp_path, BASE))
    assert "OK for train and study (8 variants)" in result.output
    result = cli("config", "check", _write(tmp_path, {**BASE, "method": {"aggregator": "upgrad"}}),
                 "--train-only")
    assert "OK for train" in result.output


@pytest.mark.parametrize("command", ["train", "study"])
def test_train_and_study_check_before_loading_data(
    cli: Invoke, tmp_path: Path, command: str
) -> None:
    bad = {**BASE, "method": {"aggregator": "upgrad", "aggregator_options": {"level": "x"}}}
    line = _one_error(cli(command, _write(tmp_path, bad), "-o", tmp_path / "out", code=2).output)
    assert "method.aggregator_options.level" in line
    assert not (tmp_path / "out").exists()


def test_study_refuses_a_variant_that_cannot_run(cli: Invoke, tmp_path: Path) -> None:
    """Base ``aggregator: upgrad`` with the ``+uw`` variant: refused before any run."""
    config = _write(tmp_path, {**BASE, "method": {"aggregator": "upgrad"}})
    result = cli("study", config, "--variants", "mtl,mtl+ca+dm+uw", "-o", tmp_path / "o", code=2)
    line = _one_error(result.output)
    assert "study.variants.1: variant 'mtl+ca+dm+uw' cannot run" in line


FACTORY_MODULE = '''
from torch import nn


def tiny(in_channels, image_size, pretrained=False, width=4):
    """A user's backbone factory."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(width)), width


def not_a_module(in_channels, image_size, pretrained=False):
    return "a string"


def wrong_signature(channels):
    return nn.Identity()
'''


@pytest.fixture
def factory_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder with a config and ``my_nets.py`` next to it; the module is forgotten after."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "my_nets.py").write_text(textwrap.dedent(FACTORY_MODULE))
    before = list(sys.path)
    yield folder
    sys.path[:] = before
    sys.modules.pop("my_nets", None)


def test_module_factory_resolves_from_the_config_folder(
    cli: Invoke, factory_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``my_nets:tiny`` next to the config works from any working directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    data = {**BASE, "backbone": {"name": "my_nets:tiny", "options": {"width": 6}}}
    cli("config", "check", _write(factory_folder, data))


@pytest.mark.parametrize(("factory", "fragment"), [
    ("my_nets:not_a_module", "returned str"),
    ("my_nets:wrong_signature", "does not name in_channels"),
    ("my_nets:missing", "has no 'missing'"),
])
def test_bad_user_factories(
    cli: Invoke, factory_folder: Path, factory: str, fragment: str
) -> None:
    data = {**BASE, "backbone": {"name": factory}}
    line = _one_error(cli("config", "check", _write(factory_folder, data), code=2).output)
    assert "backbone.name" in line and fragment in line, line


def test_module_factory_resolves_from_the_working_directory(
    cli: Invoke, factory_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(factory_folder)
    configs = tmp_path / "configs"
    configs.mkdir()
    data = {**BASE, "backbone": {"name": "my_nets:tiny"}}
    cli("config", "check", _write(configs, data))
