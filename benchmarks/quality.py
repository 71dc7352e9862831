"""Quality: the ``dmtl study`` ablation on digits and Fashion-MNIST regimes, over seeds.

Every study goes through :func:`dmtl.study.study.run_study` with
:func:`dmtl.config.load_config` and dotted overrides, exactly what
``dmtl study CONFIG --seeds N -s key=value ... -o DIR --overwrite`` does; the
equivalent command is recorded with each study. A study's output folder
(checkpoints, ``results.json``, ``report.md``, plots) goes under
``runs/benchmarks/quality/<name>`` (git-ignored); the summary used by the docs goes to
``benchmarks/results/quality.json``.

Every study runs the default protocol (``study.protocol: early_stopping``: each run trains
up to the same budget, stops on its own validation selection metric, with validation
labels that follow the regime, and is evaluated at its best checkpoint) and every variant
(single-task, plain MTL, + co-annotation, + distribution matching, both, and both with
the guard, with UPGrad, with uncertainty weighting).

Settings (``--device cpu``, the default, sized for well under an hour on 2 cores):

- digits (scikit-learn, 8x8): the ``configs/digits-scarce.yaml`` set-up (MLP, a budget of
  90 epochs) with scarce 1 %, 3 %, 10 % of the digit labels (other tasks on the rest),
  disjoint, overlap 5 % with ``digit -> ink`` estimated from the co-annotated 5 %, and
  ``unlabelled``: half of the training images without any label, and 3 % of the digit
  labels on the rest; plus one-setting comparisons at 3 %: the former equal-steps
  protocol (``study.protocol=equal_steps``), gradient through the DM target
  (``method.stop_gradient=false``) and hard co-annotation (``study.co_annotation=hard``).
- Fashion-MNIST (``configs/fashion-*.yaml``): on CPU a random 12,000 of the 70,000 images
  (``sources.0.max_samples``; train and test rows alike), an MLP backbone and a budget of
  40 epochs (:data:`FASHION_BUDGET`), which runs do not reach: early stopping ends them
  (watched from epoch 10 on, patience 5), so their verdicts are not under-trained;
  disjoint, scarce 1 % of category labels, imbalance 1:20, overlap 2 % (``category ->
  pixel`` estimated), and a single-task-only ``full`` study (100 % of the labels) for the
  gap-closing target. ``--device cuda`` (benchmarks/gpu.sh) keeps the configs' small_cnn
  and the full data instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.common import (
    QUICK_DIR,
    REPO,
    RESULTS_DIR,
    command_line,
    fashion_available,
    fashion_overrides,
    hardware,
    now,
    write_result,
)

MTL_VARIANTS = (
    "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm", "mtl+ca+dm+guard", "mtl+ca+dm+upgrad", "mtl+ca+dm+uw"
)
METHOD_VARIANTS = tuple(v for v in MTL_VARIANTS if v != "mtl")
GUARDED = ("mtl+ca+dm+guard", "mtl+ca+dm")
"""The guard's comparison: the guarded variant against the same variant without it."""
STUDY_ROOT = REPO / "runs" / "benchmarks" / "quality"


@dataclass
class StudySpec:
    """One study: a config file, overrides, and what it is for in the docs."""

    name: str
    dataset: str
    title: str
    config: str
    overrides: list[str] = field(default_factory=list)
    kind: str = "regime"  # "regime" (a full ablation), "comparison" (one switch), "reference"
    compare_to: str | None = None
    switch: str | None = None


FASHION_BUDGET = 40
"""Epochs a Fashion-MNIST run may train on CPU. 5 (before) ended every run at the budget
(under-trained, no verdict); a measured mtl+ca+dm run at 1 % peaked on validation at epoch
1 of 3, so 40 leaves early stopping room. The studies' wall time grows from the 5-epoch
figure (2,375 s for the five) by (epochs trained) / 5: at least 2x (min_epochs 10), at
most 8x."""

@dataclass
class Settings:
    """Sizes of the run (``--quick``: 1 seed, 1 epoch, tiny)."""

    seeds: int = 5
    digits_epochs: int | None = None  # None: the config's (90)
    fashion_epochs: int | None = FASHION_BUDGET
    fashion_max_samples: int | None = 12000
    fashion_backbone: str | None = "mlp"
    steps_per_epoch: int | None = None
    threads: int = 1
    num_workers: int = 0
    device: str = "cpu"
    only: list[str] | None = None
    variants: list[str] | None = None  # the regime studies' variants (None: the config's)


DIGITS_CONFIG = "configs/digits-scarce.yaml"


def plan(settings: Settings, quick: bool = False) -> list[StudySpec]:
    """The studies to run, in the order of the docs."""
    digits_common: list[str] = ["trainer.progress_bar=false"]
    if settings.digits_epochs is not None:
        digits_common.append(f"trainer.max_epochs={settings.digits_epochs}")
    scarce = "sources.0.regime.params.fraction={}"
    studies = [
        StudySpec("digits-scarce-1", "digits", "Digits, scarce: 1 % of digit labels",
                  DIGITS_CONFIG, [scarce.format(0.01)]),
        StudySpec("digits-scarce-3", "digits", "Digits, scarce: 3 % of digit labels",
                  DIGITS_CONFIG, []),
        StudySpec("digits-scarce-10", "digits", "Digits, scarce: 10 % of digit labels",
                  DIGITS_CONFIG, [scarce.format(0.1)]),
        StudySpec("digits-disjoint", "digits", "Digits, disjoint (one task per sample)",
                  DIGITS_CONFIG, ["sources.0.regime={name: disjoint, params: {}}"]),
        StudySpec(
            "digits-overlap-5", "digits",
            "Digits, overlap 5 % (digit -> shape knowledge, digit -> ink estimated)",
            DIGITS_CONFIG,
            [
                "sources.0.regime={name: overlap, params: {fraction: 0.05}}",
                "relatedness=[{source: digit, target: shape, kind: knowledge}, "
                "{source: digit, target: ink, kind: estimate, alpha: 1.0}]",
            ],
        ),
        StudySpec(
            "digits-unlabelled", "digits",
            "Digits, unlabelled: 50 % of the images without any label, 3 % of the digit "
            "labels on the rest",
            DIGITS_CONFIG,
            ["sources.0.regime={name: unlabelled, params: {fraction: 0.5, then: {name: scarce, "
             "params: {task: digit, fraction: 0.03, others_on: rest}}}}"],
        ),
        StudySpec(
            "digits-scarce-3-equal-steps", "digits",
            "Digits 3 %: the former protocol (every run the same number of steps, evaluated at "
            "the last one)",
            DIGITS_CONFIG, ["study.protocol=equal_steps"],
            kind="comparison", compare_to="digits-scarce-3", switch="protocol",
        ),
        StudySpec(
            "digits-scarce-3-gradient", "digits",
            "Digits 3 %: gradient through the DM target (method.stop_gradient=false)",
            DIGITS_CONFIG, ["method.stop_gradient=false", "study.variants=[mtl+dm, mtl+ca+dm]"],
            kind="comparison", compare_to="digits-scarce-3", switch="stop-gradient",
        ),
        StudySpec(
            "digits-scarce-3-hard", "digits",
            "Digits 3 %: hard co-annotation (study.co_annotation=hard)",
            DIGITS_CONFIG, ["study.co_annotation=hard", "study.variants=[mtl+ca, mtl+ca+dm]"],
            kind="comparison", compare_to="digits-scarce-3", switch="co-annotation",
        ),
    ]
    for spec in studies:
        spec.overrides = digits_common + spec.overrides
    fashion_common = ["trainer.progress_bar=false", *fashion_overrides()]
    if settings.fashion_max_samples is not None:
        fashion_common.append(f"sources.0.max_samples={settings.fashion_max_samples}")
    if settings.fashion_backbone == "mlp":
        fashion_common += ["backbone.name=mlp", "backbone.options={hidden: [256, 128]}"]
    if settings.fashion_epochs is not None:
        fashion_common.append(f"trainer.max_epochs={settings.fashion_epochs}")
    fashion = [
        StudySpec("fashion-disjoint", "fashion", "Fashion-MNIST, disjoint: category | group | "
                  "attributes + pixel", "configs/fashion-disjoint.yaml"),
        StudySpec("fashion-scarce-1", "fashion", "Fashion-MNIST, scarce: 1 % of category labels",
                  "configs/fashion-scarce.yaml"),
        StudySpec("fashion-imbalance", "fashion", "Fashion-MNIST, imbalance 1:20 "
                  "(category : the rest)", "configs/fashion-imbalance.yaml"),
        StudySpec("fashion-overlap-2", "fashion", "Fashion-MNIST, overlap 2 % (category -> pixel "
                  "estimated)", "configs/fashion-overlap.yaml"),
        StudySpec("fashion-full", "fashion", "Fashion-MNIST, 100 % of the labels, single-task "
                  "only (reference for the 1 % gap)", "configs/fashion-scarce.yaml",
                  ["sources.0.regime={name: full, params: {}}", "study.variants=[single_task]"],
                  kind="reference"),
    ]
    for spec in fashion:
        spec.overrides = fashion_common + spec.overrides
    specs = studies + fashion
    extra: list[str] = [f"trainer.num_threads={settings.threads}"] if settings.threads else []
    if settings.device == "cuda":
        extra += ["trainer.accelerator=gpu", "trainer.devices=1"]
    elif settings.device == "cpu":
        extra += ["trainer.accelerator=cpu"]
    if settings.steps_per_epoch is not None:
        extra.append(f"trainer.steps_per_epoch={settings.steps_per_epoch}")
    if settings.num_workers:
        extra.append(f"trainer.num_workers={settings.num_workers}")
    for spec in specs:
        if settings.variants and spec.kind == "regime":
            chosen = f"study.variants=[{', '.join(settings.variants)}]"
            spec.overrides = [*spec.overrides, chosen]
    for spec in specs:
        spec.overrides = spec.overrides + extra
    if not fashion_available():
        specs = [s for s in specs if s.dataset != "fashion"]
    if settings.only:
        specs = [s for s in specs if s.name in settings.only]
    if quick and not settings.only:
        specs = [s for s in specs if s.name == "digits-scarce-3"]
    return specs


def study_command(spec: StudySpec, seeds: int, out_dir: Path) -> str:
    """The ``dmtl study`` command line equivalent to what :func:`run_one` does."""
    parts = ["dmtl", "study", spec.config, "--seeds", str(seeds)]
    for item in spec.overrides:
        parts += ["-s", item]
    parts += ["-o", _rel(out_dir), "--overwrite"]
    return " ".join(shlex.quote(p) for p in parts)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def run_one(spec: StudySpec, seeds: int, out_dir: Path, threads: int) -> dict[str, Any]:
    """Run one study (in this process) and summarise it."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    from dmtl.config import load_config
    from dmtl.study.study import run_study

    torch.set_num_threads(max(1, threads))
    config = load_config(REPO / spec.config, spec.overrides)
    command = study_command(spec, seeds, out_dir)
    start = time.perf_counter()
    prefix = f"[{spec.name}]"

    def say(message: str) -> None:
        print(f"{prefix} {message}", flush=True)

    say(f"start: {command}")
    results = run_study(config, out_dir, seeds, overwrite=True, progress=say, command=command)
    wall = time.perf_counter() - start
    say(f"done in {wall:.0f} s")
    return summarise(spec, results, command, out_dir, wall)


def summarise(
    spec: StudySpec, results: Any, command: str, out_dir: Path, wall: float
) -> dict[str, Any]:
    """The study's table as data: mean, std, n and values per variant and task, verdicts,
    the ranking, and how each run trained."""
    from dmtl.study.recommend import recommend
    from dmtl.study.statistics import (
        best_variants,
        cell,
        negative_transfer,
        ranking,
        verdict_text,
    )

    primaries = results.primary_metrics()
    variants: dict[str, dict[str, Any]] = {}
    for variant in results.variants:
        per_task: dict[str, Any] = {}
        for task, metric in primaries.items():
            c = cell(results, variant, metric)
            per_task[task] = {"mean": c.mean, "std": c.std, "n": c.n, "values": list(c.values)}
        variants[variant] = per_task
    verdicts = negative_transfer(results)
    ranked = ranking(results)
    done = [r for r in results.runs if r.status == "done"]
    return {
        **asdict(spec),
        "command": command,
        "out_dir": _rel(out_dir),
        "report": _rel(out_dir / "report.md"),
        "seeds": list(results.seeds),
        "wall_s": round(wall, 1),
        "protocol": results.protocol,
        "tasks": {t: m.split("/", 1)[1] for t, m in primaries.items()},
        "variants": variants,
        "verdicts": {v: verdict_text(per) for v, per in verdicts.items()},
        "negative": {v: [t for t, x in per.items() if x.negative] for v, per in verdicts.items()},
        "gains": {v: {t: x.gain for t, x in per.items()} for v, per in verdicts.items()},
        "ranking": {v: float(ranked.loc[v, "mean rank"]) for v in ranked.index},
        "best": best_variants(results),
        "recommendation": recommend(results).to_dict(),
        "steps_per_run": sorted({r.steps for r in done if r.steps}),
        "training": {
            v: {
                "steps": _average([r.steps for r in done if r.variant == v]),
                "best_step": _average([r.best_step for r in done if r.variant == v]),
                "stopped_early": sum(bool(r.stopped_early) for r in done if r.variant == v),
                "runs": sum(r.variant == v for r in done),
            }
            for v in results.variants
        },
        "failed": [r.label() + f": {r.error}" for r in results.runs if r.status == "failed"],
        "regime": results.regime.get(str(results.seeds[0]), {}),
    }


def _average(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return round(sum(present) / len(present), 1) if present else None


# --------------------------------------------------------------------------- targets


def _mean(study: dict[str, Any], variant: str, task: str) -> float | None:
    entry = study.get("variants", {}).get(variant, {}).get(task)
    return None if entry is None else entry.get("mean")


def _cell(study: dict[str, Any], variant: str, task: str) -> tuple[float, float, int] | None:
    entry = study.get("variants", {}).get(variant, {}).get(task)
    if not entry or entry.get("mean") is None:
        return None
    return float(entry["mean"]), float(entry.get("std") or 0.0), int(entry.get("n") or 0)


def best_variant(study: dict[str, Any]) -> str | None:
    """The multi-task variant the report ranks first (lowest mean rank over the tasks);
    ties go to the earlier variant."""
    ranks = {v: r for v, r in study.get("ranking", {}).items() if v != "single_task"}
    if not ranks:  # results written before the ranking was recorded
        gains = study.get("gains", {})
        ranks = {
            v: -sum(g for g in per.values() if g is not None) / max(1, len(per))
            for v, per in gains.items()
        }
    return min(ranks, key=lambda v: ranks[v]) if ranks else None


def guard_drops(study: dict[str, Any]) -> list[str]:
    """Tasks on which the guarded variant is below the same variant without the guard by more
    than one pooled std (the report's negative-transfer rule, with that variant as baseline)."""
    guarded, plain = GUARDED
    drops = []
    for task in study.get("tasks", {}):
        a, b = _cell(study, guarded, task), _cell(study, plain, task)
        if a is None or b is None or min(a[2], b[2]) < 2:
            continue
        pooled = ((a[1] ** 2 + b[1] ** 2) / 2) ** 0.5
        if a[0] - b[0] < -pooled - 1e-9:
            drops.append(f"{task} ({a[0] - b[0]:+.3f})")
    return drops


def _digits_target(d3: dict[str, Any]) -> dict[str, Any]:
    single = _mean(d3, "single_task", "digit")
    method = {v: m for v in METHOD_VARIANTS if (m := _mean(d3, v, "digit")) is not None}
    top = max(method, key=lambda v: method[v]) if method else None
    value = method.get(top) if top else None
    return {
        "target": "digits 3 %: digit accuracy >= 0.95 with DM or CA (single-task ~0.80)",
        "measured": (f"{top}: {value:.3f}; single-task: {single:.3f}"
                     if value is not None and single is not None else "n/a"),
        "reached": value is not None and value >= 0.95,
    }


def _transfer_target(regimes: list[dict[str, Any]]) -> dict[str, Any]:
    hurt, details = [], []
    for s in regimes:
        best = best_variant(s)
        if best is None:
            continue
        tasks = s["negative"].get(best, [])
        details.append(f"{s['name']}: {best} ("
                       + ("hurts " + ", ".join(tasks) if tasks else "no negative transfer") + ")")
        hurt += [s["name"]] if tasks else []
    clean = len(details) - len(hurt)
    return {
        "target": "the best variant (the report's ranking) shows no negative transfer in at "
                  "least 8 of the 10 regimes",
        "measured": f"{clean} of {len(details)} regimes; " + "; ".join(details),
        "reached": bool(details) and clean >= min(8, len(details)) and len(details) >= 10,
    }


def _guard_target(regimes: list[dict[str, Any]]) -> dict[str, Any]:
    compared = [s for s in regimes if GUARDED[0] in s.get("variants", {})]
    worse = {s["name"]: guard_drops(s) for s in compared}
    named = [f"{name}: {', '.join(d)}" for name, d in worse.items() if d]
    return {
        "target": "the guard never makes a task worse than the same variant without it "
                  "(mtl+ca+dm+guard vs mtl+ca+dm, one pooled std)",
        "measured": (f"worse in {len(named)} of {len(compared)} regimes"
                     + (": " + "; ".join(named) if named else "")),
        "reached": bool(compared) and not named,
    }


def _unlabelled_target(study: dict[str, Any]) -> dict[str, Any]:
    ca, both = _mean(study, "mtl+ca", "digit"), _mean(study, "mtl+ca+dm", "digit")
    gain = None if ca is None or both is None else both - ca
    return {
        "target": "unlabelled regime: distribution matching adds >= +0.01 over co-annotation "
                  "on the scarce task (mtl+ca+dm vs mtl+ca, digit accuracy)",
        "measured": "n/a" if gain is None else f"mtl+ca {ca:.3f}, mtl+ca+dm {both:.3f}: "
                                                f"{gain:+.3f}",
        "gain": gain,
        "reached": gain is not None and gain >= 0.01,
    }


def _fashion_target(f1: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    low = _mean(f1, "single_task", "category")
    high = _mean(full, "single_task", "category")
    method = {v: m for v in MTL_VARIANTS if (m := _mean(f1, v, "category")) is not None}
    top = max(method, key=lambda v: method[v]) if method else None
    if top is not None and low is not None and high is not None and high != low:
        closed = (method[top] - low) / (high - low)
        measured = (f"single-task 1 %: {low:.3f}, 100 %: {high:.3f}, {top}: "
                    f"{method[top]:.3f}; gap closed {closed:.0%}")
    else:
        closed, measured = None, "n/a"
    return {
        "target": "Fashion-MNIST 1 %: the best variant closes >= 90 % of the gap between "
                  "single-task at 1 % and at 100 % (category accuracy)",
        "measured": measured,
        "gap_closed": closed,
        "reached": closed is not None and closed >= 0.9,
    }


def targets(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue, with the measured figure and whether it is reached."""
    studies = {s["name"]: s for s in document.get("studies", [])}
    out: list[dict[str, Any]] = []
    if "digits-scarce-3" in studies:
        out.append(_digits_target(studies["digits-scarce-3"]))
    regimes = [s for s in studies.values() if s.get("kind") == "regime"]
    if regimes:
        out += [_transfer_target(regimes), _guard_target(regimes)]
    if "digits-unlabelled" in studies:
        out.append(_unlabelled_target(studies["digits-unlabelled"]))
    if "fashion-scarce-1" in studies and "fashion-full" in studies:
        out.append(_fashion_target(studies["fashion-scarce-1"], studies["fashion-full"]))
    return out


# --------------------------------------------------------------------------- entry point


def run(
    settings: Settings,
    results_dir: Path,
    command: str,
    quick: bool = False,
    jobs: int = 1,
    study_root: Path | None = None,
) -> Path:
    """Run the planned studies (``jobs`` at a time, each in its own process); write quality.json."""
    specs = plan(settings, quick)
    root = study_root or (QUICK_DIR / "studies" if quick else STUDY_ROOT)
    started, start = now(), time.perf_counter()
    summaries: dict[str, dict[str, Any]] = {}
    if jobs <= 1:
        for spec in specs:
            summaries[spec.name] = run_one(spec, settings.seeds, root / spec.name,
                                           settings.threads)
    else:
        # Longest first (Fashion-MNIST), so the two workers finish together.
        order = sorted(specs, key=lambda s: (s.dataset != "fashion", s.kind != "regime"))
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {
                pool.submit(run_one, spec, settings.seeds, root / spec.name, settings.threads):
                spec.name
                for spec in order
            }
            for future in as_completed(futures):
                summaries[futures[future]] = future.result()
    studies: list[dict[str, Any]] = [summaries[s.name] for s in specs]
    name = "quality" if settings.device == "cpu" else "gpu-quality"
    previous = results_dir / f"{name}.json"
    if settings.only and previous.is_file():
        # Re-running some studies: keep the others' figures (each carries its own command).
        import json

        kept = [s for s in json.loads(previous.read_text()).get("studies", [])
                if s["name"] not in summaries]
        studies = kept + studies
        rank = [spec.name for spec in plan(Settings())]
        studies.sort(key=lambda s: rank.index(s["name"]) if s["name"] in rank else 99)
    document: dict[str, Any] = {
        "started": started,
        "wall_s": round(time.perf_counter() - start, 1),
        "jobs": jobs,
        "settings": asdict(settings),
        "fashion_available": fashion_available(),
        "studies": studies,
        "hardware": hardware("cuda" if settings.device == "cuda" else None),
    }
    document["targets"] = targets(document)
    return write_result(results_dir, name, document, command, quick)


def resummarise(path: Path) -> Path:
    """Rebuild the study summaries (verdicts, recommendation, targets) of the quality JSON
    at ``path`` from the studies' own ``results.json``, with the current rules: after a
    change to the report's statistics, without training again. Each study keeps its
    command and wall time; the file records that it was re-summarised, and when."""
    import json

    from dmtl.study.results import load_results

    document = json.loads(path.read_text())
    specs = {spec.name: spec for spec in plan(Settings(**{
        k: v for k, v in document.get("settings", {}).items()
        if k in Settings.__dataclass_fields__}))}
    studies = []
    for old in document.get("studies", []):
        out_dir = Path(old["out_dir"])
        out_dir = out_dir if out_dir.is_absolute() else REPO / out_dir
        spec = specs.get(old["name"])
        if spec is None or not (out_dir / "results.json").is_file():
            raise SystemExit(f"{path}: study {old['name']!r} has no results.json in {out_dir}")
        spec.overrides = []  # the summary keeps the command that ran
        fresh = summarise(spec, load_results(out_dir / "results.json"), old["command"],
                          out_dir, old.get("wall_s", 0.0))
        studies.append({**fresh, "title": old.get("title", fresh["title"]),
                        "overrides": old.get("overrides", [])})
    document["studies"] = studies
    document["targets"] = targets(document)
    document["resummarised"] = now()
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=None, help="seeds per study (default 5)")
    parser.add_argument("--jobs", type=int, default=1, help="studies run at once (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per study")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--only", nargs="+", help="run only these studies (by name)")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="the regime studies' variants ('all': every variant; default: "
                             "each config's)")
    parser.add_argument("--fashion-epochs", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--fashion-max-samples", type=int, default=None,
                        help="0: all images (default 12000 on CPU, all on CUDA)")


def settings_from(args: argparse.Namespace, quick: bool) -> Settings:
    if args.device == "cuda":
        settings = Settings(seeds=2, fashion_epochs=None, fashion_max_samples=None,
                            fashion_backbone=None, device="cuda")
    else:
        settings = Settings()
    if quick:
        settings.seeds, settings.digits_epochs, settings.fashion_epochs = 1, 1, 1
        settings.fashion_max_samples, settings.steps_per_epoch = 2000, 5
    if args.seeds is not None:
        settings.seeds = args.seeds
    if args.fashion_epochs is not None:
        settings.fashion_epochs = args.fashion_epochs
    if args.fashion_max_samples is not None:
        settings.fashion_max_samples = args.fashion_max_samples or None
    settings.threads = args.threads
    settings.num_workers = args.num_workers
    settings.only = args.only
    if args.variants == ["all"]:
        from dmtl.config import ALL_VARIANTS

        settings.variants = list(ALL_VARIANTS)
    else:
        settings.variants = args.variants
    return settings


def main(argv: Sequence[str] | None = None, results_dir: Path | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks quality")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", type=Path, default=None)
    add_arguments(parser)
    parser.add_argument("--resummarise", type=Path, default=None, metavar="JSON",
                        help="rebuild this quality JSON's summaries from its studies' "
                             "results.json with the current rules (no training)")
    args = parser.parse_args(argv)
    if args.resummarise is not None:
        return resummarise(args.resummarise)
    out = args.results or results_dir or (QUICK_DIR if args.quick else RESULTS_DIR)
    return run(settings_from(args, args.quick), out, command_line("quality", argv),
               quick=args.quick, jobs=args.jobs)


if __name__ == "__main__":
    main()
