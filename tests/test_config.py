"""The run config: YAML loading, overrides, path resolution, every problem with its dotted path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dmtl.config import Config, apply_overrides, dump_config, load_config, validate_config
from dmtl.errors import ConfigError


def _paths(error: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [path for path, _ in error.value.problems]


def test_tiny_config_loads_with_defaults(tiny_config_file: Path) -> None:
    config = load_config(tiny_config_file)
    assert isinstance(config, Config)
    assert config.name == "tiny"
    assert config.trainer.max_epochs == 1 and config.trainer.batch_size == 32
    assert config.method.co_annotation == "off" and config.method.distribution_matching is False
    assert config.study.variants == ["single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"]


def test_shipped_demo_config_is_valid() -> None:
    from importlib import resources

    with resources.as_file(resources.files("dmtl") / "configs" / "digits-demo.yaml") as path:
        config = load_config(path)
    assert config.sources[0].builtin == "digits"


def test_dump_config_round_trips(tiny_config_file: Path, tmp_path: Path) -> None:
    config = load_config(tiny_config_file, ["trainer.max_epochs=4"])
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(config))
    assert load_config(again) == config


# ---- overrides -----------------------------------------------------------------------------------


def test_overrides_parse_values_as_yaml(tiny_config_file: Path) -> None:
    config = load_config(
        tiny_config_file,
        [
            "trainer.max_epochs=3",
            "optim.lr=0.5",
            "trainer.deterministic=true",
            "backbone.options.hidden=[8, 4]",
            "sources.0.regime.params.fraction=0.2",
            "relatedness.0.kind=estimate",
            "trainer.monitor=",
        ],
    )
    assert config.trainer.max_epochs == 3
    assert config.optim.lr == 0.5
    assert config.trainer.deterministic is True
    assert config.backbone.options["hidden"] == [8, 4]
    assert config.sources[0].regime.params["fraction"] == 0.2
    assert config.relatedness[0].kind == "estimate"
    assert config.trainer.monitor is None


def test_overrides_create_missing_sections(tiny_data: Callable[..., dict[str, Any]]) -> None:
    data = tiny_data()
    del data["study"]
    out = apply_overrides(data, ["study.seeds=7", "method.task_weights.digit=2"])
    assert out["study"] == {"seeds": 7}
    assert out["method"]["task_weights"] == {"digit": 2}
    assert "study" not in data  # the input mapping is not modified


@pytest.mark.parametrize(
    ("override", "path", "message"),
    [
        ("trainer.max_epochs", "trainer.max_epochs", "key.sub=value"),
        ("sources.3.name=x", "sources.3", "no such list item"),
        ("sources.x.name=x", "sources.x", "no such list item"),
        ("relatedness.5=x", "relatedness.5", "no such list item"),
        ("trainer.max_epochs.x=1", "trainer.max_epochs", "is not a section"),
    ],
)
def test_bad_override_syntax(
    tiny_config_file: Path, override: str, path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(tiny_config_file, [override])
    ((where, text),) = error.value.problems
    assert where == path
    assert message in text


def test_override_of_an_unknown_key_is_reported_as_such(tiny_config_file: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(tiny_config_file, ["trainer.max_epoch=3"])
    assert _paths(error) == ["trainer.max_epoch"]


# ---- schema problems, all at once ----------------------------------------------------------------


def test_every_schema_problem_is_reported_with_its_dotted_path(
    write_config: Callable[..., Path], tiny_data: Callable[..., dict[str, Any]]
) -> None:
    data = tiny_data()
    data["sources"][0]["colour"] = "red"  # unknown key
    data["trainer"]["max_epochs"] = "many"  # wrong type
    data["trainer"]["batch_size"] = 0  # out of range
    data["optimm"] = {}  # unknown section
    data["relatedness"].append({"source": "digit", "target": "ink", "kind": "table"})  # no path
    data["method"] = {"co_annotation": "sometimes"}  # not an allowed value
    path = write_config(data)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert sorted(_paths(error)) == sorted(
        [
            "sources.0.colour",
            "trainer.max_epochs",
            "trainer.batch_size",
            "optimm",
            "relatedness.1",
            "method.co_annotation",
        ]
    )
    text = str(error.value)
    assert text.startswith(f"6 problems in {path}:")
    assert "  sources.0.colour: Extra inputs are not permitted" in text
    assert error.value.file == str(path)


def test_source_needs_exactly_one_kind(tiny_data: Callable[..., dict[str, Any]]) -> None:
    data = tiny_data()
    data["sources"][0]["reader"] = "rafdb"
    with pytest.raises(ConfigError) as error:
        validate_config(data)
    assert _paths(error) == ["sources.0"]
    assert "exactly one of 'builtin', 'manifest' or 'reader'" in error.value.problems[0][1]


def test_config_without_sources(tiny_data: Callable[..., dict[str, Any]]) -> None:
    data = tiny_data()
    data["sources"] = []
    with pytest.raises(ConfigError) as error:
        validate_config(data)
    assert _paths(error) == ["sources"]


def test_task_declaration_problems(tiny_data: Callable[..., dict[str, Any]]) -> None:
    data = tiny_data(
        tasks=[
            {"name": "a", "type": "categorical"},
            {"name": "b", "type": "binary_set", "labels": ["x"], "classes": ["y"]},
            {"name": "c", "type": "ordinal", "classes": ["y"]},
        ]
    )
    with pytest.raises(ConfigError) as error:
        validate_config(data)
    paths = _paths(error)
    # tasks.0 (no classes) may set options of a task a source brings: valid here
    assert "tasks.0" not in paths and "tasks.1.classes" in paths
    assert any(p.startswith("tasks.2") for p in paths)


# ---- consistency problems, all at once -----------------------------------------------------------


def _manifest_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,digit\na.png,0\n")
    data: dict[str, Any] = {
        "tasks": [
            {"name": "digit", "type": "categorical", "classes": ["0", "1"]},
            {"name": "attr", "type": "binary_set", "labels": ["x", "y"]},
        ],
        "sources": [{"name": "m", "manifest": str(manifest), "root": str(tmp_path)}],
    }
    data.update(extra)
    return data


def test_consistency_problems_are_reported_together(tmp_path: Path) -> None:
    data = _manifest_config(
        tmp_path,
        relatedness=[
            {"source": "digit", "target": "colour"},  # unknown target task
            {"source": "attr", "target": "digit"},  # source not categorical
            {"source": "digit", "target": "digit"},  # self edge
            {"source": "digit", "target": "attr", "kind": "table", "path": "missing.csv"},
            {"source": "digit", "target": "attr"},  # duplicated edge
        ],
        method={"task_weights": {"colour": 2.0}},
    )
    data["sources"].append(
        {"name": "m", "manifest": str(tmp_path / "nothing.csv"), "root": str(tmp_path / "no")}
    )
    with pytest.raises(ConfigError) as error:
        validate_config(data)
    problems = dict(error.value.problems)
    assert "no task 'colour'" in problems["relatedness.0.target"]
    assert "must be categorical" in problems["relatedness.1.source"]
    assert "to itself" in problems["relatedness.2"]
    assert "file not found" in problems["relatedness.3.path"]
    assert "duplicated edge digit->attr" in problems["relatedness.4"]
    assert problems["method.task_weights.colour"] == "no such task"
    assert "duplicated source name 'm'" in problems["sources.1.name"]
    assert "file not found" in problems["sources.1.manifest"]
    assert "folder not found" in problems["sources.1.root"]


def test_manifest_source_needs_declared_tasks(tmp_path: Path) -> None:
    data = _manifest_config(tmp_path)
    data["tasks"] = []
    with pytest.raises(ConfigError) as error:
        validate_config(data)
    assert _paths(error) == ["sources.0.manifest"]


def test_builtin_tasks_are_not_known_to_the_config(
    tiny_data: Callable[..., dict[str, Any]],
) -> None:
    """A built-in dataset brings its own tasks: edges and weights naming them are valid here
    (an unknown one is reported when the experiment is built, see test_experiment.py)."""
    data = tiny_data(
        relatedness=[{"source": "digit", "target": "ink"}, {"source": "digit", "target": "what"}],
        method={"task_weights": {"ink": 2.0}},
        tasks=[{"name": "extra", "type": "categorical", "classes": ["a", "b"]}],
    )
    validate_config(data)


def test_relative_paths_are_resolved_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "m.csv").write_text("image,digit\na.png,0\n")
    (folder / "table.csv").write_text("digit,x,y\n0,0.5,0.5\n1,0.5,0.5\n")
    data = _manifest_config(folder)
    data["sources"][0].update({"manifest": "m.csv", "root": "."})
    data["relatedness"] = [{"source": "digit", "target": "attr", "kind": "table",
                            "path": "table.csv"}]
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    assert config.sources[0].manifest == (folder / "m.csv").resolve()
    assert config.sources[0].root == folder.resolve()
    assert config.relatedness[0].path == (folder / "table.csv").resolve()


# ---- files ---------------------------------------------------------------------------------------


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found") as error:
        load_config(tmp_path / "nope.yaml")
    assert _paths(error) == [""]


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sources: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


def test_error_message_lists_every_problem_on_its_own_line() -> None:
    error = ConfigError([("a.b", "bad"), ("", "worse")], file="x.yaml")
    assert str(error) == "2 problems in x.yaml:\n  a.b: bad\n  <root>: worse"
    assert isinstance(error, ValueError)
