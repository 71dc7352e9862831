"""Experiment tracking: ``output.loggers`` through Lightning's loggers, with no network.

MLflow logs to a local file store, W&B runs offline; both are optional packages.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import pytest

from dmtl.build.data import build_experiment
from dmtl.config import ConfigError, validate_config
from dmtl.errors import MissingDependencyError, RunError
from dmtl.training.run import run_training
from dmtl.training.trainer import TRACKING_FILE, build_loggers, run_name


def test_the_old_tensorboard_key_is_read_as_a_logger(tiny_data: Any) -> None:
    on = validate_config(tiny_data(output={"tensorboard": True}))
    assert on.output.loggers == ["csv", "tensorboard"]
    off = validate_config(tiny_data(output={"tensorboard": False}))
    assert off.output.loggers == ["csv"]
    with pytest.raises(ConfigError, match="tensorboard: expected true or false"):
        validate_config(tiny_data(output={"tensorboard": "yes"}))


def test_csv_is_always_first_and_loggers_are_not_repeated(tiny_data: Any) -> None:
    config = validate_config(tiny_data(output={"loggers": ["wandb", "mlflow", "wandb"]}))
    assert config.output.loggers == ["csv", "wandb", "mlflow"]
    with pytest.raises(ConfigError, match=r"output.loggers.0"):
        validate_config(tiny_data(output={"loggers": ["neptune"]}))


@pytest.mark.parametrize(
    ("run_dir", "name"),
    [
        ("out/study/runs/seed0/mtl+ca", "seed0/mtl+ca"),
        ("out/study/runs/seed1/single_task-digit", "seed1/single_task-digit"),
        ("runs/tiny", "tiny"),
        ("my-run", "my-run"),
    ],
)
def test_tracker_runs_are_named_by_their_place_in_a_study(run_dir: str, name: str) -> None:
    assert run_name(Path(run_dir)) == name


def test_csv_only_by_default(tiny_data: Any, tmp_path: Path) -> None:
    loggers = build_loggers(validate_config(tiny_data()), tmp_path)
    assert [type(logger).__name__ for logger in loggers] == ["AppendingCSVLogger"]
    assert not (tmp_path / "logs" / TRACKING_FILE).exists()


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is not None
    or importlib.util.find_spec("tensorboardX") is not None,
    reason="tensorboard is installed",
)
def test_a_missing_tracker_package_says_how_to_install_it(tiny_data: Any, tmp_path: Path) -> None:
    config = validate_config(tiny_data(output={"loggers": ["tensorboard"]}))
    with pytest.raises(
        MissingDependencyError, match=r"tensorboard.*pip install 'dmtl\[tensorboard\]'"
    ):
        build_loggers(config, tmp_path)


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A local MLflow file store (MLflow >= 3.7 asks for this opt-in to use one)."""
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return (tmp_path / "mlruns").as_uri()


@pytest.mark.slow
def test_mlflow_gets_the_metrics_and_the_config_of_a_run(
    tiny_data: Any, tmp_path: Path, mlflow_store: str
) -> None:
    from mlflow.tracking import MlflowClient

    data = tiny_data(output={"loggers": ["mlflow"], "mlflow": {"tracking_uri": mlflow_store,
                                                               "experiment": "faces"}})
    run_dir = tmp_path / "runs" / "seed0" / "mtl"
    run_training(build_experiment(validate_config(data)), run_dir, quiet=True, progress_bar=False)
    ids = json.loads((run_dir / "logs" / TRACKING_FILE).read_text())
    client = MlflowClient(tracking_uri=mlflow_store)
    run = client.get_run(ids["mlflow"])
    assert run.info.run_name == "seed0/mtl"
    assert client.get_experiment(run.info.experiment_id).name == "faces"
    assert "train/loss_epoch" in run.data.metrics
    assert any(key.startswith("test/digit/") for key in run.data.metrics)
    assert run.data.params["trainer.batch_size"] == "32"
    assert run.data.params["backbone.name"] == "mlp"
    # the same run folder (a resumed run) logs to the same MLflow run
    again = build_loggers(validate_config(data), run_dir)[1]
    assert again.run_id == ids["mlflow"]  # type: ignore[attr-defined]


def test_an_mlflow_store_that_refuses_is_one_clear_error(
    tiny_data: Any, tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.exceptions import MlflowException

    def refuse(self: Any) -> None:
        raise MlflowException("The filesystem tracking backend is in maintenance mode.\nmore")

    monkeypatch.setattr(MLFlowLogger, "run_id", property(refuse))
    data = tiny_data(output={"loggers": ["mlflow"], "mlflow": {"tracking_uri": mlflow_store}})
    with pytest.raises(RunError, match=r"mlflow cannot start a run at file:.*maintenance mode"
                       r".*\); set output.mlflow.tracking_uri") as info:
        build_loggers(validate_config(data), tmp_path / "run")
    assert "\n" not in str(info.value)


def _wandb_records(run_dir: Path, run_id: str, wanted: bytes) -> bytes:
    """The offline run's record file, once it holds ``wanted`` (W&B's service writes it in
    the background: wait for it, up to a minute)."""
    files = list((run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 1, files
    content = b""
    for _ in range(600):
        content = files[0].read_bytes()
        if wanted in content:
            break
        time.sleep(0.1)
    return content


@pytest.mark.slow
def test_wandb_offline_writes_each_run_locally(
    tiny_data: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs in one process (as in a study) are two W&B runs, each with its metrics."""
    pytest.importorskip("wandb")
    import wandb

    for key, value in {"WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path),
                       "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
                       "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    data = tiny_data(output={"loggers": ["wandb"], "wandb": {"mode": "offline",
                                                             "project": "faces"}})
    run_dirs = [tmp_path / "study" / "runs" / "seed0" / name for name in ("mtl", "mtl+dm")]
    try:
        for run_dir in run_dirs:
            experiment = build_experiment(validate_config(data))
            run_training(experiment, run_dir, quiet=True, progress_bar=False)
    finally:
        wandb.finish()
    ids = [json.loads((d / "logs" / TRACKING_FILE).read_text())["wandb"] for d in run_dirs]
    assert ids[0] != ids[1]
    for run_dir, run_id in zip(run_dirs, ids, strict=True):
        content = _wandb_records(run_dir, run_id, b"test/digit/accuracy")
        assert b"train/loss_epoch" in content and b"test/digit/accuracy" in content
        assert b"faces" in content and run_name(run_dir).encode() in content
