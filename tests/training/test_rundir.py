"""The output-folder checks run before anything heavy is imported, and change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmtl.errors import OutputError
from dmtl.training.rundir import check_run_dir, prepare_run_dir


def test_check_run_dir_refuses_like_prepare_but_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "missing"
    assert check_run_dir(missing) is False and not missing.exists()
    with pytest.raises(OutputError, match="cannot resume"):
        check_run_dir(missing, resume=True)
    used = tmp_path / "used"
    used.mkdir()
    (used / "metrics.json").write_text("{}")
    with pytest.raises(OutputError, match="already exists and is not empty"):
        check_run_dir(used)
    with pytest.raises(OutputError, match="cannot be combined"):
        check_run_dir(used, resume=True, overwrite=True)
    assert check_run_dir(used, resume=True) is False
    assert check_run_dir(used, overwrite=True) is True and (used / "metrics.json").exists()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"did not write \(notes\.txt\)"):
        check_run_dir(used, overwrite=True)
    with pytest.raises(OutputError, match="current folder"):
        check_run_dir(Path("."), overwrite=True)
    (used / "notes.txt").unlink()
    assert prepare_run_dir(used, overwrite=True) == used and not any(used.iterdir())



def test_a_study_folder_holds_only_what_dmtl_writes() -> None:
    """Every file a study writes beside its runs is known, so --overwrite may delete it."""
    from dmtl.study import outputs
    from dmtl.training.rundir import OUTPUT_NAMES

    written = {outputs.METRIC_PLOT, outputs.LEARNING_CURVES_PLOT,
               outputs.VALIDATION_CURVES_PLOT, outputs.CURVES_CSV}
    assert {name for name in written if not name.endswith(".png")} <= OUTPUT_NAMES
