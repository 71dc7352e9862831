"""The study: every ablation variant over several seeds, resumable, with a report.

Variants (method.md section 8):

- ``single_task``: one model per task, trained on exactly that task's labels;
- ``mtl``: one model, masked supervised losses only;
- ``mtl+ca``: + co-annotation (``study.co_annotation``: soft or hard);
- ``mtl+dm``: + distribution matching;
- ``mtl+ca+dm``: both;
- ``mtl+ca+dm+guard``: both, each relatedness term weighted by the guard
  (:mod:`dmtl.core.guard`);
- ``mtl+ca+dm+upgrad``: both, the per-task gradients of the trunk aggregated by UPGrad;
- ``mtl+ca+dm+uw``: both, the per-task losses weighted by learned uncertainty.

``--variants`` (:func:`with_variants`) picks some of them, by the names
``config.Variant`` allows.

The protocol (``study.protocol``): with ``early_stopping`` (the default) every run
trains up to the same budget of steps (``study.budget_epochs`` of the multi-task
epoch), stops when its validation selection metric (``val/selection``: the mean over
its tasks of their primary metric) has not improved for ``study.patience`` epochs, and
is evaluated at its best checkpoint; validation labels follow the regime
(``trainer.validation_labels``). With ``equal_steps`` every run trains the same number
of steps and is evaluated at the last one.

``results.json`` is rewritten after each run, so an interrupted study resumes where it
stopped (``--resume``) without repeating finished runs: a run that was interrupted goes
on from its checkpoint (exactly, see :func:`~dmtl.training.run.run_training`), a failed
one is trained again. A resume refuses a config that differs from the study's
(``config.yaml``) except in the seeds and variants it runs, unless ``allow_config_change``.
"""

from __future__ import annotations

import time
import traceback
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dmtl.config import Config, EarlyStoppingConfig, Variant, dump_config
from dmtl.data.loaders import train_loader
from dmtl.data.pipeline import (
    Experiment,
    LoadedSource,
    build_experiment,
    experiment_warnings,
    load_sources,
)
from dmtl.errors import ConfigError
from dmtl.knowledge.heatmap import plot_relatedness
from dmtl.study.outputs import write_report
from dmtl.study.results import (
    RunRecord,
    StudyResults,
    TaskInfo,
    collect_hardware,
    completed,
    find_run,
    load_results,
    record_command,
    save_results,
    upsert_run,
)
from dmtl.training.resume import RESUME_FREE_KEYS, check_resume, record_config_changes
from dmtl.training.run import run_training
from dmtl.training.trainer import check_monitor, prepare_run_dir, refuse_resume_with_overwrite

_CA_DM: dict[str, Any] = {"co_annotation": "<study>", "distribution_matching": True}

VARIANT_METHODS: dict[str, dict[str, Any]] = {
    "mtl": {"co_annotation": "off", "distribution_matching": False},
    "mtl+ca": {"co_annotation": "<study>", "distribution_matching": False},
    "mtl+dm": {"co_annotation": "off", "distribution_matching": True},
    "mtl+ca+dm": _CA_DM,
    "mtl+ca+dm+guard": {**_CA_DM, "guard": True},
    "mtl+ca+dm+upgrad": {**_CA_DM, "aggregator": "upgrad"},
    "mtl+ca+dm+uw": {**_CA_DM, "weighting": "uncertainty"},
}
"""The method switches of each multi-task variant (the rest of ``method`` is the config's)."""


def variant_config(config: Config, variant: str) -> Config:
    """The config with the method switches of a multi-task variant."""
    changes = dict(VARIANT_METHODS[variant])
    if changes["co_annotation"] == "<study>":
        changes["co_annotation"] = config.study.co_annotation
    method = config.method.model_copy(update=changes)
    return config.model_copy(update={"method": method})


def with_variants(config: Config, names: str) -> Config:
    """The config with ``study.variants`` set from ``names`` (comma-separated, in that order).

    The allowed names are those of ``config.Variant``; an unknown or repeated name is a
    :class:`~dmtl.errors.ConfigError` listing the known ones.
    """
    known: tuple[str, ...] = typing.get_args(Variant)
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        got = f"unknown variant {', '.join(map(repr, unknown))}" if unknown else "no variant"
        raise ConfigError([("--variants", f"{got}; known: {', '.join(known)}")])
    repeated = sorted({name for name in chosen if chosen.count(name) > 1})
    if repeated:
        raise ConfigError([("--variants", f"{', '.join(map(repr, repeated))} given twice")])
    study = config.study.model_copy(update={"variants": chosen})
    return config.model_copy(update={"study": study})


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
    allow_config_change: bool = False,
    progress: ProgressFn | None = None,
    command: str | None = None,
) -> StudyResults:
    """Run (or resume) the study; write ``results.json``, ``report.md`` and plots to ``out_dir``."""
    say = progress or (lambda message: None)
    out_dir = Path(out_dir)
    results_path = out_dir / "results.json"
    n_seeds = seeds or config.study.seeds
    seed_list = [config.trainer.seed + i for i in range(n_seeds)]
    resuming = _prepare_study_dir(out_dir, config, resume, overwrite, allow_config_change)
    (out_dir / "config.yaml").write_text(dump_config(config))
    loaded = load_sources(config)
    config = protocol_config(config, loaded)
    results: StudyResults | None = load_results(results_path) if results_path.is_file() else None
    if results is not None:
        record_command(results, command)  # a resume: its command produced results too
    for seed in seed_list:
        experiment = build_experiment(config, seed, loaded)
        if seed == seed_list[0]:
            check_monitor(config, experiment.tasks)
            for line in experiment_warnings(experiment):
                say(f"warning: {line}")
        if results is None:
            results = _new_results(config, experiment, seed_list, command)
        results.seeds = sorted(set(results.seeds) | set(seed_list))
        results.variants += [v for v in config.study.variants if v not in results.variants]
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
                        resuming,
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
                    resuming,
                )
    assert results is not None
    save_results(results, results_path)
    write_report(results, out_dir, extra_plots=_relatedness_plots(experiment, out_dir))
    return results


STUDY_RESUME_FREE_KEYS = (*RESUME_FREE_KEYS, "study.seeds", "study.variants")
"""What a resumed study may change freely: the seeds and variants it runs, and what a run
may change (:data:`~dmtl.training.resume.RESUME_FREE_KEYS`)."""


def _prepare_study_dir(
    out_dir: Path, config: Config, resume: bool, overwrite: bool, allow_config_change: bool
) -> _Resuming | None:
    """Check a resume (recording an allowed change) and prepare the folder; how runs resume."""
    refuse_resume_with_overwrite(out_dir, resume, overwrite)
    changes = (
        check_resume(out_dir, config, allow_config_change, ignore=STUDY_RESUME_FREE_KEYS)
        if resume
        else []
    )
    prepare_run_dir(out_dir, resume=resume, overwrite=overwrite)
    if changes:
        record_config_changes(out_dir, changes, None)
    return _Resuming(allow_config_change) if resume else None


@dataclass(frozen=True)
class _Resuming:
    """How the runs of a resumed study are resumed."""

    allow_config_change: bool


def _relatedness_plots(experiment: Experiment, out_dir: Path) -> dict[str, Path]:
    """A heatmap of every edge's table; an estimated one (of the last seed) names its seed.

    Tables of kind ``knowledge``, ``affect`` and ``table`` are the same for every seed;
    with no ``relatedness`` list every edge is a knowledge table.
    """
    kinds = {(e.source, e.target): e.kind for e in experiment.config.relatedness}
    plots: dict[str, Path] = {}
    for edge in experiment.edges:
        kind = kinds.get((edge.source.name, edge.target.name), "knowledge")
        origin = f"estimated, seed {experiment.seed}" if kind == "estimate" else f"{kind} table"
        path = out_dir / f"relatedness_{edge.source.name}__{edge.target.name}.png"
        plot_relatedness(
            edge.table.cpu().numpy(),
            list(edge.source.names),
            list(edge.target.names),
            path,
            title=f"p({edge.target.name} | {edge.source.name}) ({origin})",
        )
        plots[f"Relatedness {edge.name} ({origin})"] = path
    return plots


def _with_config(experiment: Experiment, config: Config) -> Experiment:
    import dataclasses

    return dataclasses.replace(experiment, config=config)


def protocol_config(config: Config, loaded: Sequence[LoadedSource]) -> Config:
    """The config every run of the study trains with, under ``study.protocol``.

    ``early_stopping``: ``trainer.max_epochs`` = the budget, ``trainer.monitor`` =
    ``val/selection`` with early stopping after ``study.patience`` epochs, evaluation at the
    best checkpoint, and ``study.val_fraction`` of the training rows of every source that
    has no validation rows carved for validation. ``equal_steps``: the config as it is.
    """
    study = config.study
    if study.protocol == "equal_steps":
        return config
    sources = []
    for cfg, item in zip(config.sources, loaded, strict=True):
        has_val = cfg.val_fraction > 0 or (
            cfg.val_split is not None and bool((item.split == cfg.val_split).any())
        )
        carved = {"val_fraction": study.val_fraction}
        sources.append(cfg if has_val else cfg.model_copy(update=carved))
    trainer = config.trainer.model_copy(
        update={
            "max_epochs": study.budget_epochs or config.trainer.max_epochs,
            "monitor": "val/selection",
            "early_stopping": EarlyStoppingConfig(enabled=True, patience=study.patience),
        }
    )
    output = config.output.model_copy(update={"checkpoint": "best"})
    return config.model_copy(update={"sources": sources, "trainer": trainer, "output": output})


def _protocol(config: Config) -> dict[str, Any]:
    """How the runs are trained, for the report (the trainer settings every run shares)."""
    trainer = config.trainer
    if config.study.protocol == "early_stopping":
        return {
            "name": "early_stopping",
            "budget_epochs": trainer.max_epochs,
            "patience": trainer.early_stopping.patience,
            "monitor": trainer.monitor,
            "validation": trainer.validation_labels,
            "val_fraction": config.study.val_fraction,
        }
    return {"name": "equal_steps", "epochs": trainer.max_epochs,
            "checkpoint": config.output.checkpoint, "validation": trainer.validation_labels}


def _new_results(
    config: Config, experiment: Experiment, seeds: list[int], command: str | None
) -> StudyResults:
    return StudyResults(
        study=config.name,
        command=command,
        commands=[command] if command else [],
        protocol=_protocol(config),
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
    resuming: _Resuming | None = None,
) -> None:
    label = f"{variant}" + (f"[{task}]" if task else "") + f" seed {seed}"
    if completed(results, variant, seed, task):
        say(f"skip {label} (done)")
        return
    run_dir = out_dir / "runs" / f"seed{seed}" / (variant + (f"-{task}" if task else ""))
    # an interrupted run goes on from its checkpoint; a failed or a new one starts afresh
    go_on = (
        resuming is not None
        and find_run(results, variant, seed, task) is None
        and (run_dir / "config.yaml").is_file()
    )
    start = time.perf_counter()
    say(f"{'resume' if go_on else 'train'} {label}")
    try:
        result = run_training(
            experiment,
            run_dir,
            resume=go_on,
            overwrite=not go_on,
            allow_config_change=go_on and resuming is not None and resuming.allow_config_change,
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
            epochs=result.epochs,
            best_step=result.best_step,
            stopped_early=result.stopped_early,
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
