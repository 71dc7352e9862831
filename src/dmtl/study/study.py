"""The study: every ablation variant over several seeds, resumable, with a report.

Variants (method.md section 8):

- ``single_task``: one model per task, trained on exactly that task's labels;
- ``mtl``: one model, masked supervised losses only;
- ``mtl+ca``: + co-annotation (``study.co_annotation``: soft or hard);
- ``mtl+dm``: + distribution matching;
- ``mtl+ca+dm``: both.

Every variant gets the same number of optimisation steps: the single-task runs use
the multi-task epoch length, so a small task is not under-trained by a short epoch.
``results.json`` is rewritten after each run, so an interrupted study resumes
where it stopped (``--resume``) without repeating finished runs.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dmtl.config import Config, dump_config
from dmtl.data.pipeline import Experiment, build_experiment, load_sources
from dmtl.study.report import write_report
from dmtl.study.results import (
    RunRecord,
    StudyResults,
    TaskInfo,
    collect_hardware,
    completed,
    load_results,
    save_results,
    upsert_run,
)
from dmtl.training.run import run_training, train_loader
from dmtl.training.trainer import prepare_run_dir

VARIANT_METHODS: dict[str, dict[str, Any]] = {
    "mtl": {"co_annotation": "off", "distribution_matching": False},
    "mtl+ca": {"co_annotation": "<study>", "distribution_matching": False},
    "mtl+dm": {"co_annotation": "off", "distribution_matching": True},
    "mtl+ca+dm": {"co_annotation": "<study>", "distribution_matching": True},
}


def variant_config(config: Config, variant: str) -> Config:
    """The config with the method switches of a multi-task variant."""
    changes = dict(VARIANT_METHODS[variant])
    if changes["co_annotation"] == "<study>":
        changes["co_annotation"] = config.study.co_annotation
    method = config.method.model_copy(update=changes)
    return config.model_copy(update={"method": method})


def _device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


ProgressFn = Callable[[str], None]


def run_study(
    config: Config,
    out_dir: Path,
    seeds: int | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    command: str | None = None,
) -> StudyResults:
    """Run (or resume) the study; write ``results.json``, ``report.md`` and plots to ``out_dir``."""
    say = progress or (lambda message: None)
    out_dir = Path(out_dir)
    results_path = out_dir / "results.json"
    n_seeds = seeds or config.study.seeds
    seed_list = [config.trainer.seed + i for i in range(n_seeds)]
    prepare_run_dir(out_dir, resume=resume, overwrite=overwrite)
    (out_dir / "config.yaml").write_text(dump_config(config))
    loaded = load_sources(config)
    results: StudyResults | None = load_results(results_path) if results_path.is_file() else None
    for seed in seed_list:
        experiment = build_experiment(config, seed, loaded)
        if results is None:
            results = _new_results(config, experiment, seed_list, command)
        results.seeds = sorted(set(results.seeds) | set(seed_list))
        results.regime[str(seed)] = experiment.records
        steps_per_epoch = config.trainer.steps_per_epoch or len(train_loader(experiment))
        for variant in config.study.variants:
            if variant == "single_task":
                for task in experiment.tasks:
                    _one_run(
                        results,
                        results_path,
                        out_dir,
                        experiment.single_task(task.name),
                        variant,
                        seed,
                        task.name,
                        steps_per_epoch,
                        say,
                    )
            else:
                varied = _with_config(experiment, variant_config(config, variant))
                _one_run(
                    results,
                    results_path,
                    out_dir,
                    varied,
                    variant,
                    seed,
                    None,
                    steps_per_epoch,
                    say,
                )
    assert results is not None
    save_results(results, results_path)
    write_report(results, out_dir, extra_plots=_relatedness_plots(experiment, out_dir))
    return results


def _relatedness_plots(experiment: Experiment, out_dir: Path) -> dict[str, Path]:
    """A heatmap of every edge's table (of the last seed: estimated tables vary with it)."""
    from dmtl.study.plots import plot_relatedness

    plots: dict[str, Path] = {}
    for edge in experiment.edges:
        path = out_dir / f"relatedness_{edge.source.name}__{edge.target.name}.png"
        plot_relatedness(
            edge.table.cpu().numpy(),
            list(edge.source.names),
            list(edge.target.names),
            path,
            title=f"p({edge.target.name} | {edge.source.name}) (seed {experiment.seed})",
        )
        plots[f"Relatedness {edge.name}"] = path
    return plots


def _with_config(experiment: Experiment, config: Config) -> Experiment:
    import dataclasses

    return dataclasses.replace(experiment, config=config)


def _new_results(
    config: Config, experiment: Experiment, seeds: list[int], command: str | None
) -> StudyResults:
    return StudyResults(
        study=config.name,
        command=command,
        config=config.model_dump(mode="json"),
        tasks={t.name: TaskInfo.from_task(t) for t in experiment.tasks},
        variants=list(config.study.variants),
        seeds=seeds,
        hardware=collect_hardware(_device_name()),
    )


def _one_run(
    results: StudyResults,
    results_path: Path,
    out_dir: Path,
    experiment: Experiment,
    variant: str,
    seed: int,
    task: str | None,
    steps_per_epoch: int,
    say: ProgressFn,
) -> None:
    label = f"{variant}" + (f"[{task}]" if task else "") + f" seed {seed}"
    if completed(results, variant, seed, task):
        say(f"skip {label} (done)")
        return
    run_dir = out_dir / "runs" / f"seed{seed}" / (variant + (f"-{task}" if task else ""))
    start = time.perf_counter()
    say(f"train {label}")
    try:
        result = run_training(
            experiment,
            run_dir,
            overwrite=True,
            steps_per_epoch=steps_per_epoch,
            quiet=True,
            progress_bar=False,
        )
        record = RunRecord(
            variant=variant,
            seed=seed,
            task=task,
            status="done",
            metrics=result.metrics,
            split=result.split,
            wall_s=round(time.perf_counter() - start, 3),
            steps=result.steps,
            run_dir=str(run_dir.relative_to(out_dir)),
            error=None,
        )
    except (KeyboardInterrupt, SystemExit):
        save_results(results, results_path)
        raise
    except Exception as error:  # a failed run is recorded, and the study goes on
        record = RunRecord(
            variant=variant,
            seed=seed,
            task=task,
            status="failed",
            metrics={},
            split="",
            wall_s=round(time.perf_counter() - start, 3),
            steps=0,
            run_dir=str(run_dir.relative_to(out_dir)),
            error=f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}",
        )
        say(f"FAILED {label}: {type(error).__name__}: {error}")
    upsert_run(results, record)
    save_results(results, results_path)
