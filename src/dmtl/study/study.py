"""The study: every ablation variant over several seeds, resumable, with a report.

Variants (method.md section 8):

- ``single_task``: one model per task, trained on exactly that task's labels;
- ``mtl``: one model, masked supervised losses only;
- ``mtl+ca``: + co-annotation (``study.co_annotation``: soft or hard);
- ``mtl+dm``: + distribution matching;
- ``mtl+ca+dm``: both.

``--variants`` (:func:`with_variants`) picks some of them, by the names
``config.Variant`` allows.

Every variant gets the same number of optimisation steps: the single-task runs use
the multi-task epoch length, so a small task is not under-trained by a short epoch.
``results.json`` is rewritten after each run, so an interrupted study resumes
where it stopped (``--resume``) without repeating finished runs.
"""

from __future__ import annotations

import contextlib
import functools
import time
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dmtl.config import Config, Variant, dump_config
from dmtl.data.loaders import train_loader
from dmtl.data.pipeline import Experiment, LoadedSource, build_experiment, load_sources
from dmtl.errors import ConfigError
from dmtl.knowledge.heatmap import plot_relatedness
from dmtl.study.observer import StudyObserver
from dmtl.study.outputs import write_report
from dmtl.study.parallel import STUDY_PRELOAD, run_parallel, warm_up
from dmtl.study.results import (
    RunRecord,
    StudyResults,
    TaskInfo,
    collect_hardware,
    completed,
    expected_runs,
    load_results,
    record_command,
    save_results,
    upsert_run,
)
from dmtl.training.quiet import silence_lightning
from dmtl.training.threads import resolve_threads

if TYPE_CHECKING:
    from lightning.pytorch import Callback

    from dmtl.training.run import RunResult

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


@dataclass(frozen=True)
class PlannedRun:
    """One run of the study: a variant, a seed and, for ``single_task``, its task."""

    variant: str
    seed: int
    task: str | None
    steps_per_epoch: int

    @property
    def label(self) -> str:
        """``mtl+ca seed 0``, ``single_task[digit] seed 1``."""
        return f"{self.variant}" + (f"[{self.task}]" if self.task else "") + f" seed {self.seed}"

    def run_dir(self, out_dir: Path) -> Path:
        """Where the run writes its files."""
        name = self.variant + (f"-{self.task}" if self.task else "")
        return out_dir / "runs" / f"seed{self.seed}" / name


def run_study(
    config: Config,
    out_dir: Path,
    seeds: int | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    command: str | None = None,
    jobs: int = 1,
    observer: StudyObserver | None = None,
) -> StudyResults:
    """Run (or resume) the study; write ``results.json``, ``report.md`` and plots to ``out_dir``.

    ``jobs`` > 1 trains that many runs at once, each in its own worker process with
    ``trainer.num_threads: auto`` sharing the usable cores among them; this process alone
    writes ``results.json`` (after every run) and the report. ``progress`` gets one line
    per event (``train ...``, ``skip ... (done)``, ``FAILED ...``); ``observer`` gets
    structured events (a progress bar).
    """
    if jobs > 1:
        warm_up(STUDY_PRELOAD)  # the workers' imports overlap with loading the data here
    from dmtl.training.trainer import prepare_run_dir  # Lightning, only where it is needed

    say = progress or (lambda message: None)
    watch = observer or StudyObserver()
    out_dir = Path(out_dir)
    results_path = out_dir / "results.json"
    n_seeds = seeds or config.study.seeds
    seed_list = [config.trainer.seed + i for i in range(n_seeds)]
    prepare_run_dir(out_dir, resume=resume, overwrite=overwrite)
    (out_dir / "config.yaml").write_text(dump_config(config))
    loaded = load_sources(config)
    results: StudyResults | None = load_results(results_path) if results_path.is_file() else None
    if results is not None:
        record_command(results, command)  # a resume: its command produced results too
    experiments: dict[int, Experiment] = {}
    plan: list[PlannedRun] = []
    for seed in seed_list:
        experiment = build_experiment(config, seed, loaded)
        experiments[seed] = experiment
        if results is None:
            results = _new_results(config, experiment, seed_list, command)
        results.seeds = sorted(set(results.seeds) | set(seed_list))
        results.variants += [v for v in config.study.variants if v not in results.variants]
        results.regime[str(seed)] = experiment.records
        steps_per_epoch = config.trainer.steps_per_epoch or len(train_loader(experiment))
        for variant in config.study.variants:
            tasks = [t.name for t in experiment.tasks] if variant == "single_task" else [None]
            plan += [PlannedRun(variant, seed, task, steps_per_epoch) for task in tasks]
    assert results is not None
    todo = [run for run in plan if not completed(results, run.variant, run.seed, run.task)]
    for run in plan:
        if run not in todo:
            say(f"skip {run.label} (done)")
    watch.study_started(len(plan), len(plan) - len(todo))
    book = _Bookkeeper(results, results_path, out_dir, say, watch)
    if jobs > 1 and len(todo) > 1:
        _run_parallel(config, todo, out_dir, jobs, book)
    else:
        _run_serial(config, experiments, todo, out_dir, book)
    save_results(results, results_path)
    write_report(results, out_dir, extra_plots=_relatedness_plots(experiment, out_dir))
    return results


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


def _protocol(config: Config) -> dict[str, Any]:
    """How the runs are trained, for the report (the trainer settings every run shares)."""
    trainer = config.trainer
    if trainer.early_stopping.enabled and trainer.monitor:
        return {"name": "early_stopping", "budget_epochs": trainer.max_epochs,
                "patience": trainer.early_stopping.patience, "monitor": trainer.monitor}
    return {"name": "fixed_epochs", "epochs": trainer.max_epochs,
            "checkpoint": config.output.checkpoint}


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


class _Bookkeeper:
    """Records finished runs: ``results.json`` rewritten after each, in plan order."""

    def __init__(
        self,
        results: StudyResults,
        path: Path,
        out_dir: Path,
        say: ProgressFn,
        watch: StudyObserver,
    ) -> None:
        self.results, self.path, self.out_dir = results, path, out_dir
        self.say, self.watch = say, watch

    def started(self, run: PlannedRun) -> None:
        self.say(f"train {run.label}")
        self.watch.run_started(run.label)

    def finished(self, run: PlannedRun, record: RunRecord) -> None:
        if record.status == "failed":
            first = (record.error or "").splitlines()[0] if record.error else ""
            self.say(f"FAILED {run.label}: {first}")
        upsert_run(self.results, record)
        order = {key: i for i, key in enumerate(expected_runs(self.results))}
        self.results.runs.sort(key=lambda r: order.get(r.key, len(order)))
        save_results(self.results, self.path)
        self.watch.run_finished(record)

    def save(self) -> None:
        save_results(self.results, self.path)


def run_training(*args: Any, **kwargs: Any) -> RunResult:
    """:func:`dmtl.training.run.run_training`, imported on first use: Lightning takes seconds
    to import, and the process that only plans and records parallel runs never needs it."""
    from dmtl.training.run import run_training as train

    return train(*args, **kwargs)


def _epoch_progress(report: Callable[[int, int], None]) -> Callback:
    from dmtl.training.callbacks import EpochProgress

    return EpochProgress(report)


def _run_serial(
    config: Config,
    experiments: dict[int, Experiment],
    todo: list[PlannedRun],
    out_dir: Path,
    book: _Bookkeeper,
) -> None:
    """The runs one after the other, in this process."""
    for run in todo:
        book.started(run)
        progress = _epoch_progress(functools.partial(book.watch.epoch_finished, run.label))
        try:
            record = _one_run(experiments[run.seed], config, run, out_dir, [progress])
        except (KeyboardInterrupt, SystemExit):
            book.save()
            raise
        book.finished(run, record)


def _one_run(
    experiment: Experiment,
    config: Config,
    run: PlannedRun,
    out_dir: Path,
    callbacks: list[Callback] | None = None,
) -> RunRecord:
    """Train one planned run on the seed's experiment; a failure is recorded, not raised."""
    run_dir = run.run_dir(out_dir)
    start = time.perf_counter()
    try:
        if run.task is not None:
            varied = experiment.single_task(run.task)
        else:
            varied = _with_config(experiment, variant_config(config, run.variant))
        result = run_training(
            varied,
            run_dir,
            overwrite=True,
            steps_per_epoch=run.steps_per_epoch,
            quiet=True,
            progress_bar=False,
            callbacks=callbacks,
        )
        return RunRecord(
            variant=run.variant,
            seed=run.seed,
            task=run.task,
            status="done",
            metrics=result.metrics,
            split=result.split,
            wall_s=round(time.perf_counter() - start, 3),
            steps=result.steps,
            # reported by trainers that stop early; None until RunResult carries them
            epochs=getattr(result, "epochs", None),
            best_step=getattr(result, "best_step", None),
            stopped_early=getattr(result, "stopped_early", None),
            run_dir=str(run_dir.relative_to(out_dir)),
            error=None,
        )
    except Exception as error:  # a failed run is recorded, and the study goes on
        return _failed(run, run_dir, out_dir, time.perf_counter() - start,
                       f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}")


def _failed(run: PlannedRun, run_dir: Path, out_dir: Path, wall_s: float, error: str) -> RunRecord:
    return RunRecord(
        variant=run.variant,
        seed=run.seed,
        task=run.task,
        status="failed",
        metrics={},
        split="",
        wall_s=round(wall_s, 3),
        steps=0,
        run_dir=str(run_dir.relative_to(out_dir)),
        error=error,
    )


# ---- parallel runs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunJob:
    """What a worker process needs to train one run (it rebuilds the seed's experiment)."""

    config: Config
    run: PlannedRun
    out_dir: str


def _run_parallel(
    config: Config, todo: list[PlannedRun], out_dir: Path, jobs: int, book: _Bookkeeper
) -> None:
    """The runs in ``jobs`` worker processes; this process records every result."""
    threads = resolve_threads(config.trainer.num_threads, processes=jobs)
    trainer = config.trainer.model_copy(update={"num_threads": threads})
    worker_config = config.model_copy(update={"trainer": trainer})
    items = [_RunJob(worker_config, run, str(out_dir)) for run in todo]
    events = run_parallel(_run_job, items, jobs, preload=STUDY_PRELOAD)
    with contextlib.closing(events):
        try:
            for kind, index, data in events:
                run = todo[index]
                if kind == "started":
                    book.started(run)
                elif kind == "progress":
                    book.watch.epoch_finished(run.label, *data)
                else:
                    book.finished(run, _job_record(run, out_dir, kind, data))
        except (KeyboardInterrupt, SystemExit):
            book.save()
            raise


def _job_record(run: PlannedRun, out_dir: Path, kind: str, data: Any) -> RunRecord:
    """The record of a finished job: the worker's, or a failure the worker could not record."""
    if kind == "done":
        return RunRecord.model_validate(data)
    reason = data if kind == "error" else f"the worker process died (exit code {data})"
    return _failed(run, run.run_dir(out_dir), out_dir, 0.0, str(reason))


_WORKER_EXPERIMENTS: dict[tuple[str, int], Experiment] = {}
"""A worker process's experiments by (config, seed): each seed is built once per worker."""


def _run_job(job: _RunJob, report: Callable[[Any], None]) -> dict[str, Any]:
    """In a worker process: train one run; its record as plain data."""
    silence_lightning()  # the parent draws the progress; Lightning's chatter would break it
    key = (job.config.model_dump_json(), job.run.seed)
    if key not in _WORKER_EXPERIMENTS:
        loaded = _WORKER_SOURCES.get(key[0])
        if loaded is None:
            loaded = _WORKER_SOURCES.setdefault(key[0], load_sources(job.config))
        _WORKER_EXPERIMENTS[key] = build_experiment(job.config, job.run.seed, loaded)
    progress = _epoch_progress(lambda epoch, total: report((epoch, total)))
    record = _one_run(_WORKER_EXPERIMENTS[key], job.config, job.run, Path(job.out_dir), [progress])
    return record.model_dump(mode="json")


_WORKER_SOURCES: dict[str, list[LoadedSource]] = {}
"""A worker process's loaded sources by config: read (and cached images decoded) once."""
