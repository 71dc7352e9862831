"""A run validates its config once: ``dmtl train`` reads and validates the config file, and
every layer below takes the validated object (issue #19). A resume validates the run
folder's saved config once more, to compare it with the new one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dmtl.config import Config
from dmtl.training import resume

Invoke = Callable[..., Any]


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts every validation of a whole config (``Config.model_validate``, which
    ``load_config``, ``saved_config`` and a resume's check of the saved config all call),
    by the ``output.dir`` of what was validated."""
    counts: Counter[str] = Counter()
    validate = Config.model_validate.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Config], data: Any, *args: Any, **kwargs: Any) -> Config:
        config = validate(cls, data, *args, **kwargs)
        counts[Path(config.output.dir).name] += 1
        return config

    monkeypatch.setattr(Config, "model_validate", classmethod(counted))
    resume._saved_run_config.cache_clear()
    return counts


def test_train_validates_the_config_once(
    cli: Invoke, tiny_config_file: Path, validations: Counter[str]
) -> None:
    cli("train", tiny_config_file)
    assert (tiny_config_file.parent / "runs" / "tiny" / "metrics.json").is_file()
    assert validations == {"tiny": 1}


def test_resume_validates_the_new_and_the_saved_config_once_each(
    cli: Invoke, tiny_config_file: Path, validations: Counter[str]
) -> None:
    cli("train", tiny_config_file)
    validations.clear()
    cli("train", tiny_config_file, "--resume", "--allow-config-change",
        "-s", "trainer.max_epochs=2")
    assert validations == {"tiny": 2}  # the file given, the run's config.yaml
