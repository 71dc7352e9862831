"""Shared helpers: paths, hardware description, result files (one JSON per section)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
"""The repository root (benchmarks/ lives directly under it)."""

RESULTS_DIR = REPO / "benchmarks" / "results"
DOC_PATH = REPO / "docs" / "benchmarks.md"
QUICK_DIR = Path(tempfile.gettempdir()) / "dmtl-benchmarks-quick"
"""Where ``--quick`` runs write by default, so that a smoke run never replaces real figures."""

SCHEMA = 1
"""Version of the result-file layout (``benchmarks/results/<name>.json``)."""

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where ``dataset-fashion-mnist`` installs the idx files; ``DMTL_FASHION_DIR`` overrides it."""


def fashion_dir() -> Path:
    return Path(os.environ.get("DMTL_FASHION_DIR") or FASHION_DIR)


def fashion_available() -> bool:
    folder = fashion_dir()
    return folder.is_dir() and any(folder.glob("*idx*"))


def fashion_overrides() -> list[str]:
    """``sources.0.options.root=...`` when the files are not in the default folder."""
    folder = fashion_dir()
    return [] if folder == FASHION_DIR else [f"sources.0.options.root={folder.resolve()}"]


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (``sched_getaffinity``), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def hardware(device: str | None = None) -> dict[str, Any]:
    """Where a benchmark ran: CPU model, cores, torch / Python / platform, accelerator name."""
    import torch

    if device is None:
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def now() -> str:
    """UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_result(
    results_dir: Path, name: str, payload: dict[str, Any], command: str, quick: bool
) -> Path:
    """Write ``<results_dir>/<name>.json``: ``payload`` plus the command, date and hardware."""
    results_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "schema": SCHEMA,
        "name": name,
        "command": command,
        "quick": quick,
        "finished": now(),
        **payload,
    }
    document.setdefault("hardware", hardware())
    path = results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_results(results_dir: Path) -> dict[str, dict[str, Any]]:
    """Every ``<name>.json`` in ``results_dir``, by name."""
    out: dict[str, dict[str, Any]] = {}
    if not results_dir.is_dir():
        return out
    for path in sorted(results_dir.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            print(f"warning: skipping unreadable {path}: {error}", file=sys.stderr)
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def command_line(section: str, argv: Sequence[str]) -> str:
    """The command as a user would type it (``python -m benchmarks <section> ...``)."""
    return " ".join(["python -m benchmarks", section, *argv]).strip()
