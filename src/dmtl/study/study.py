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

``--jobs N`` trains N runs at once in worker processes (:mod:`dmtl.study.parallel`), each
with its share of the cores; this process alone writes ``results.json`` and the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
import traceback
import typing
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dmtl.build.data import (
    Experiment,
    LoadedSource,
    build_experiment,
    experiment_warnings,
    load_sources,
)
from dmtl.build.loaders import train_loader
from dmtl.config import (
    VARIANT_ARCHITECTURES,
    Config,
    EarlyStoppingConfig,
    Variant,
    dump_config,
    variant_method,
)
from dmtl.errors import ConfigError
from dmtl.knowledge.heatmap import plot_relatedness
from dmtl.study.groups import check_group_column, checkpoint_groups
from dmtl.study.observer import StudyObserver
from dmtl.study.outputs import write_report
from dmtl.study.parallel import STUDY_PRELOAD, run_parallel, warm_up
from dmtl.study.recommend import recommend
from dmtl.study.report import AFFINITY_PLOT, AFFINITY_TABLE
from dmtl.study.results import (
    RunRecord,
    StudyResults,
    TaskInfo,
    collect_hardware,
    completed,
    expected_runs,
    find_run,
    load_results,
    record_command,
    record_warning,
    save_results,
    upsert_run,
)
from dmtl.training.quiet import silence_lightning
from dmtl.training.threads import resolve_threads

if TYPE_CHECKING:
    from lightning.pytorch import Callback

    from dmtl.training.run import RunResult

def variant_config(config: Config, variant: str) -> Config:
    """The config with the method switches of a multi-task variant
    (:data:`dmtl.config.VARIANT_METHODS`), validated, and the architecture of a variant with
    task-specific capacity (:data:`dmtl.config.VARIANT_ARCHITECTURES`): the config's own
    when it has that name, else the variant's default."""
    update: dict[str, Any] = {"method": variant_method(config, variant)}
    architecture = VARIANT_ARCHITECTURES.get(variant)
    if architecture is not None and config.architecture.name != architecture["name"]:
        update["architecture"] = config.architecture.model_validate(architecture)
    return config.model_copy(update=update)


def with_variants(config: Config, names: str) -> Config:
    """The config with ``study.variants`` set from ``names`` (comma-separated, in that order;
    ``all``: every variant).

    The allowed names are those of ``config.Variant``; an unknown or repeated name is a
    :class:`~dmtl.errors.ConfigError` listing the known ones.
    """
    known: tuple[str, ...] = typing.get_args(Variant)
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    if chosen == ["all"]:
        chosen = list(known)
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
    resume: bool = False
    """Go on from the run's checkpoint (it was interrupted in an earlier, resumed study)."""

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
    allow_config_change: bool = False,
    progress: ProgressFn | None = None,
    command: str | None = None,
    jobs: int = 1,
    observer: StudyObserver | None = None,
) -> StudyResults:
    """Run (or resume) the study; write ``results.json``, ``report.md`` and plots to ``out_dir``.

    ``jobs`` > 1 trains that many runs at once, each in its own worker process with
    ``trainer.num_threads: auto`` sharing the usable cores among them; this process alone
    writes ``results.json`` (after every run) and the report. ``progress`` gets one line
    per event (``warning: ...`` once per warning, ``train ...``, ``resume ...``,
    ``skip ... (done)``, ``FAILED ...``, ``affinity ...``); ``observer`` gets structured
    events (a progress bar). ``results.json`` records the effective config (with ``seeds``
    and ``out_dir``), the warnings and the study's elapsed wall time (summed over resumes).
    """
    start = time.perf_counter()
    if jobs > 1:
        warm_up(STUDY_PRELOAD)  # the workers' imports overlap with loading the data here
    say = progress or (lambda message: None)
    out_dir = Path(out_dir)
    results_path = out_dir / "results.json"
    config = effective_config(config, out_dir, seeds)
    _prepare_study_dir(out_dir, config, resume, overwrite, allow_config_change)
    (out_dir / "config.yaml").write_text(dump_config(config))
    notes: list[str] = []
    with relayed_warnings(notes.append):
        loaded = load_sources(config)
    config = protocol_config(config, loaded)
    results: StudyResults | None = load_results(results_path) if results_path.is_file() else None
    if results is not None:
        record_command(results, command)  # a resume: its command produced results too
    results, experiments, plan = _plan_study(config, loaded, results, command, notes)
    for line in dict.fromkeys(notes):  # each warning once, however many seeds repeat it
        record_warning(results, line)
        say(f"warning: {line}")
    todo = _runs_to_do(plan, results, out_dir, resume, say)
    watch = observer or StudyObserver()
    watch.study_started(len(plan), len(plan) - len(todo))
    book = _Bookkeeper(results, results_path, out_dir, say, watch, start)
    if jobs > 1 and len(todo) > 1:
        _run_parallel(config, todo, out_dir, jobs, allow_config_change, book)
    else:
        _run_serial(config, experiments, todo, out_dir, allow_config_change, book)
    results.config = _config_record(config, results)
    results.recommendation = recommend(results).to_dict()
    if config.study.affinity:
        _study_affinity(experiments[min(experiments)], out_dir, results, say)
    plots = _relatedness_plots(experiments[max(experiments)], out_dir)
    book.save()  # with the wall time so far; the report's figure is the same one
    write_report(results, out_dir, extra_plots=plots)
    return results


def effective_config(config: Config, out_dir: Path, seeds: int | None) -> Config:
    """The config the study runs: ``study.seeds`` = ``seeds`` when given, ``output.dir`` =
    the study folder (``--out``), on top of what the command line changed already."""
    study = config.study.model_copy(update={"seeds": seeds or config.study.seeds})
    output = config.output.model_copy(update={"dir": str(out_dir)})
    return config.model_copy(update={"study": study, "output": output})


def _config_record(config: Config, results: StudyResults) -> dict[str, Any]:
    """The config of ``results.json``: what ran (the protocol's), with every seed and
    variant of the study, a resume's included."""
    study = config.study.model_copy(
        update={"seeds": len(results.seeds), "variants": list(results.variants)}
    )
    return config.model_copy(update={"study": study}).model_dump(mode="json")


def _plan_study(
    config: Config,
    loaded: Sequence[LoadedSource],
    results: StudyResults | None,
    command: str | None,
    notes: list[str],
) -> tuple[StudyResults, dict[int, Experiment], list[PlannedRun]]:
    """Each seed's experiment and runs, in order; the results extended with them (new ones
    when ``results`` is ``None``). What the experiments warn of is added to ``notes``."""
    seed_list = [config.trainer.seed + i for i in range(config.study.seeds)]
    experiments: dict[int, Experiment] = {}
    plan: list[PlannedRun] = []
    for seed in seed_list:
        with relayed_warnings(notes.append):
            experiment = build_experiment(config, seed, loaded)
        experiments[seed] = experiment
        notes += _check_study(config, experiment, first=seed == seed_list[0])
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
    return results, experiments, plan


@contextlib.contextmanager
def relayed_warnings(report: Callable[[str], None]) -> Iterator[None]:
    """Python ``UserWarning``s raised inside (e.g. corrupt images skipped) go to ``report``
    as one line each, to be said once as study warnings; other warnings pass through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    for item in caught:
        if issubclass(item.category, UserWarning):
            report(str(item.message))
        else:
            warnings.showwarning(item.message, item.category, item.filename, item.lineno)


def _check_study(config: Config, experiment: Experiment, *, first: bool) -> list[str]:
    """Refuse a monitor the runs cannot log (checked on the ``first`` seed); what the
    experiment's data will not teach, one line each."""
    from dmtl.training.trainer import check_monitor  # Lightning, only where it is needed

    if first:
        check_monitor(config, experiment.tasks)
        if config.study.group_by is not None:
            check_group_column(experiment, config.study.group_by, config.study.groups)
    return experiment_warnings(experiment)


def _runs_to_do(
    plan: list[PlannedRun], results: StudyResults, out_dir: Path, resume: bool, say: ProgressFn
) -> list[PlannedRun]:
    """The planned runs not yet done. In a resumed study, a run that was interrupted (no
    record, a run folder) goes on from its checkpoint; a failed or a new one starts afresh."""
    todo: list[PlannedRun] = []
    for run in plan:
        if completed(results, run.variant, run.seed, run.task):
            say(f"skip {run.label} (done)")
            continue
        interrupted = (
            resume
            and find_run(results, run.variant, run.seed, run.task) is None
            and (run.run_dir(out_dir) / "config.yaml").is_file()
        )
        todo.append(dataclasses.replace(run, resume=interrupted))
    return todo


STUDY_FREE_KEYS = ("study.seeds", "study.variants", "study.affinity")
"""What a resumed study may change freely: the seeds and variants it runs and whether it
measures the task affinity, besides what a run may change
(:data:`~dmtl.training.resume.RESUME_FREE_KEYS`)."""


def _prepare_study_dir(
    out_dir: Path, config: Config, resume: bool, overwrite: bool, allow_config_change: bool
) -> None:
    """Check a resume (recording an allowed change) and prepare the folder."""
    # Lightning, only where it is needed: not in ``dmtl --help``
    from dmtl.training.resume import RESUME_FREE_KEYS, check_resume, record_config_changes
    from dmtl.training.trainer import prepare_run_dir, refuse_resume_with_overwrite

    refuse_resume_with_overwrite(out_dir, resume, overwrite)
    free = (*RESUME_FREE_KEYS, *STUDY_FREE_KEYS)
    changes = check_resume(out_dir, config, allow_config_change, ignore=free) if resume else []
    prepare_run_dir(out_dir, resume=resume, overwrite=overwrite)
    if changes:
        record_config_changes(out_dir, changes, None)


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
            row_label=f"{edge.source.name} (source)",
            col_label=f"{edge.target.name} (target)",
        )
        plots[f"Relatedness {edge.name} ({origin})"] = path
    return plots


AFFINITY_EPOCHS, AFFINITY_EVERY = 2, 4
"""The short run of the study's affinity: ``dmtl affinity``'s defaults."""


def _study_affinity(
    experiment: Experiment, out_dir: Path, results: StudyResults, say: ProgressFn
) -> None:
    """Measure the task affinity on ``experiment`` (the first seed's) as ``dmtl affinity``
    does, write ``affinity.csv`` and ``affinity.png`` and keep the table in
    ``results.affinity``; done once (a resume keeps it). A failure is a study warning."""
    from dmtl.training.affinity import measure_affinity, write_affinity

    table, heat_map = out_dir / AFFINITY_TABLE, out_dir / AFFINITY_PLOT
    if results.affinity is not None and table.is_file() and heat_map.is_file():
        return
    say(f"affinity (seed {experiment.seed}, {AFFINITY_EPOCHS} epochs)")
    try:
        result = measure_affinity(experiment, epochs=AFFINITY_EPOCHS, every=AFFINITY_EVERY)
        write_affinity(result, table, heat_map)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C (Lightning turns it into SystemExit)
        line = "task affinity not measured: interrupted (Ctrl-C); --resume measures it"
        record_warning(results, line)
        say(f"warning: {line}")
        return
    except Exception as error:  # the runs are done: the report is still written
        line = f"task affinity not measured: {type(error).__name__}: {error}"
        record_warning(results, line)
        say(f"warning: {line}")
        return
    results.affinity = {
        "seed": experiment.seed, "epochs": AFFINITY_EPOCHS, "every": AFFINITY_EVERY,
        "steps": result.steps, "wall_s": round(result.wall_s, 3),
        "branches": result.branches, "rows": result.rows(),
    }


def _with_config(experiment: Experiment, config: Config) -> Experiment:
    import dataclasses

    return dataclasses.replace(experiment, config=config)


def protocol_config(config: Config, loaded: Sequence[LoadedSource]) -> Config:
    """The config every run of the study trains with, under ``study.protocol``.

    ``early_stopping``: ``trainer.max_epochs`` = the budget, ``trainer.monitor`` =
    ``val/selection`` with early stopping after ``study.patience`` epochs (not before
    ``study.min_epochs``, default a quarter of the budget), evaluation at the
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
    budget = study.budget_epochs or config.trainer.max_epochs
    min_epochs = study.min_epochs if study.min_epochs is not None else math.ceil(budget / 4)
    stopping = EarlyStoppingConfig(
        enabled=True, patience=study.patience, min_epochs=min(min_epochs, budget)
    )
    trainer = config.trainer.model_copy(
        update={"max_epochs": budget, "monitor": "val/selection", "early_stopping": stopping}
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
            "min_epochs": trainer.early_stopping.min_epochs,
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


class _Bookkeeper:
    """Records finished runs: ``results.json`` rewritten after each, in plan order."""

    def __init__(
        self,
        results: StudyResults,
        path: Path,
        out_dir: Path,
        say: ProgressFn,
        watch: StudyObserver,
        start: float,
    ) -> None:
        self.results, self.path, self.out_dir = results, path, out_dir
        self.say, self.watch = say, watch
        # when this command's study began (time.perf_counter()); the wall time of the
        # commands before it (a resume's)
        self.start, self.earlier_wall_s = start, results.wall_s or 0.0

    def started(self, run: PlannedRun) -> None:
        self.say(f"{'resume' if run.resume else 'train'} {run.label}")
        self.watch.run_started(run.label)

    def finished(self, run: PlannedRun, record: RunRecord) -> None:
        if record.status == "failed":
            first = (record.error or "").splitlines()[0] if record.error else ""
            self.say(f"FAILED {run.label}: {first}")
        upsert_run(self.results, record)
        order = {key: i for i, key in enumerate(expected_runs(self.results))}
        self.results.runs.sort(key=lambda r: order.get(r.key, len(order)))
        self.save()
        self.watch.run_finished(record)

    def save(self) -> None:
        """Write ``results.json``, with the study's wall time up to now (an interrupted
        command keeps what it spent)."""
        elapsed = time.perf_counter() - self.start
        self.results.wall_s = round(self.earlier_wall_s + elapsed, 1)
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
    allow_config_change: bool,
    book: _Bookkeeper,
) -> None:
    """The runs one after the other, in this process."""
    for run in todo:
        book.started(run)
        progress = _epoch_progress(functools.partial(book.watch.epoch_finished, run.label))
        try:
            record = _one_run(
                experiments[run.seed], config, run, out_dir, allow_config_change, [progress]
            )
        except (KeyboardInterrupt, SystemExit):
            book.save()
            raise
        book.finished(run, record)


def _one_run(
    experiment: Experiment,
    config: Config,
    run: PlannedRun,
    out_dir: Path,
    allow_config_change: bool = False,
    callbacks: list[Callback] | None = None,
) -> RunRecord:
    """Train (or, ``run.resume``, go on with) one planned run on the seed's experiment;
    a failure is recorded, not raised."""
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
            resume=run.resume,
            overwrite=not run.resume,
            allow_config_change=run.resume and allow_config_change,
            steps_per_epoch=run.steps_per_epoch,
            quiet=True,
            progress_bar=False,
            callbacks=callbacks,
        )
        groups = _group_table(config, varied, result)
        return RunRecord(
            variant=run.variant,
            seed=run.seed,
            task=run.task,
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
            groups=groups,
            val_metrics=result.val_metrics,
        )
    except Exception as error:  # a failed run is recorded, and the study goes on
        return _failed(run, run_dir, out_dir, time.perf_counter() - start,
                       f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}")


def _group_table(
    config: Config, experiment: Experiment, result: RunResult
) -> dict[str, Any] | None:
    """With ``study.group_by``: the run's metrics per group of that column (in the worker
    that trained it, so a parallel study gets it back with the record)."""
    if config.study.group_by is None:
        return None
    return checkpoint_groups(
        result.checkpoint, experiment, config.study.group_by, config.study.groups
    )


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
    allow_config_change: bool


def _run_parallel(
    config: Config,
    todo: list[PlannedRun],
    out_dir: Path,
    jobs: int,
    allow_config_change: bool,
    book: _Bookkeeper,
) -> None:
    """The runs in ``jobs`` worker processes; this process records every result."""
    threads = resolve_threads(config.trainer.num_threads, processes=jobs)
    trainer = config.trainer.model_copy(update={"num_threads": threads})
    worker_config = config.model_copy(update={"trainer": trainer})
    items = [_RunJob(worker_config, run, str(out_dir), allow_config_change) for run in todo]
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
        with warnings.catch_warnings():  # the parent said them once, when it loaded the data
            warnings.simplefilter("ignore", UserWarning)
            loaded = _WORKER_SOURCES.get(key[0])
            if loaded is None:
                loaded = _WORKER_SOURCES.setdefault(key[0], load_sources(job.config))
            _WORKER_EXPERIMENTS[key] = build_experiment(job.config, job.run.seed, loaded)
    progress = _epoch_progress(lambda epoch, total: report((epoch, total)))
    record = _one_run(
        _WORKER_EXPERIMENTS[key], job.config, job.run, Path(job.out_dir),
        job.allow_config_change, [progress],
    )
    return record.model_dump(mode="json")


_WORKER_SOURCES: dict[str, list[LoadedSource]] = {}
"""A worker process's loaded sources by config: read (and cached images decoded) once."""
