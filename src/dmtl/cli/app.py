"""The ``dmtl`` command: train, evaluate, predict, study, demo; relatedness/datasets/config."""

from __future__ import annotations

import json
import os
import shlex
import sys
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dmtl.cli.errors import console, handle_errors, quiet_lightning, warn_line, warnings_as_lines
from dmtl.cli.options import AllowConfigChange, ConfigArg, Overrides, Overwrite, Resume
from dmtl.cli.outputs import check_output_file, check_output_folder
from dmtl.errors import ConfigError

if TYPE_CHECKING:
    from dmtl.config import Config

app = typer.Typer(
    name="dmtl",
    help="Multi-task learning of classification tasks from partially labelled data "
    "(co-annotation and distribution matching, Kollias et al. AAAI 2024).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Variants = Annotated[
    str | None,
    typer.Option(
        "--variants",
        help="Comma-separated variants to run, in that order (default: study.variants), "
        "e.g. single_task,mtl,mtl+ca+dm; 'all' for every variant.",
    ),
]


Jobs = Annotated[
    str,
    typer.Option(
        "--jobs",
        "-j",
        help="Runs trained at once, each in its own process: a number, or 'auto' for the "
        "cores this process may use. With trainer.num_threads: auto the cores are shared "
        "among them (one thread each when jobs = cores); on a GPU the runs share it.",
    ),
]


def _jobs(value: str) -> int:
    """``--jobs``: a positive number or ``auto`` (the usable cores)."""
    if value.strip().lower() == "auto":
        from dmtl.training.threads import usable_cores

        return usable_cores()
    if not value.strip().isdigit() or int(value) < 1:
        raise ConfigError([("--jobs", f"a number >= 1 or 'auto', got {value!r}")])
    return int(value)


def _command_line() -> str:
    return "dmtl " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@app.command()
@handle_errors
def train(
    config: ConfigArg,
    set_: Overrides = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: output.dir).")
    ] = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    allow_config_change: AllowConfigChange = False,
) -> None:
    """Train one model as the config says; checkpoints, logs and metrics go to the output folder.

    Ctrl-C saves a checkpoint at the end of the step in progress; --resume continues
    from it exactly. A second Ctrl-C quits at once.
    """
    from dmtl.build.check import checked_config
    from dmtl.training.rundir import launch_rank, prepare_run_dir

    cfg = checked_config(config, set_ or [])  # before anything runs or any data loads
    run_dir = check_output_folder(out or cfg.output.dir, "--out" if out else "output.dir")
    first = launch_rank() == 0  # under DDP, every rank runs this command
    _check_before_loading(run_dir, cfg, resume, overwrite, allow_config_change, first)
    if first and not resume:
        prepare_run_dir(run_dir, overwrite=overwrite)

    from dmtl.build.data import build_experiment, experiment_warnings
    from dmtl.cli.render import metrics_table
    from dmtl.training.interrupt import INTERRUPT_EXIT_CODE, TrainingInterrupted
    from dmtl.training.run import run_training
    from dmtl.training.trainer import check_monitor

    with warnings_as_lines():
        experiment = build_experiment(cfg)
    check_monitor(cfg, experiment.tasks)
    for line in experiment_warnings(experiment) if first else []:
        warn_line(line)
    try:
        with quiet_lightning():
            result = run_training(
                experiment,
                run_dir,
                resume=resume,
                allow_config_change=allow_config_change,
                progress_bar=cfg.trainer.progress_bar,
            )
    except TrainingInterrupted as stopped:
        if first:
            console.print(stopped.message, soft_wrap=True, highlight=False)
        raise typer.Exit(code=INTERRUPT_EXIT_CODE) from None
    if not first:
        return
    if result.finished_before:
        console.print(f"{run_dir} holds a finished run: nothing to resume.", soft_wrap=True)
    console.print(metrics_table(result.metrics, f"{cfg.name}: {result.split} metrics"))
    console.print(
        f"{result.steps} steps in {result.wall_s:.1f} s; outputs in [bold]{run_dir}[/] "
        f"(checkpoint {result.checkpoint})"
    )


def _check_before_loading(
    run_dir: Path,
    cfg: Config,
    resume: bool,
    overwrite: bool,
    allow_config_change: bool,
    first: bool = True,
) -> None:
    """Refuse an output folder, or a resume, that cannot be honoured before the data is
    loaded (it may take long) and before torch is imported (a refusal answers at once).

    ``first``: the first (or only) process, the one that prepares the folder.
    """
    from dmtl.training.rundir import check_run_dir, refuse_resume_with_overwrite

    refuse_resume_with_overwrite(run_dir, resume, overwrite)
    if allow_config_change and not resume:
        raise ConfigError([("--allow-config-change", "only applies with --resume")])
    if resume:
        from dmtl.training.resume import check_resume

        check_resume(run_dir, cfg, allow_config_change)
    elif first:
        check_run_dir(run_dir, resume, overwrite)


def _reported_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint named in ``run_dir/metrics.json``, found in the folder's
    ``checkpoints/`` (the folder may have moved since); ``None`` if there is none."""
    import json

    try:
        named = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(named, str) or not named:
        return None
    candidate = run_dir / "checkpoints" / Path(named).name
    return candidate if candidate.is_file() else None


def _resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file as given, or a run folder's model: the checkpoint its final
    metrics are for (``metrics.json``'s ``checkpoint``: the best one when a metric was
    monitored), else ``last.ckpt``, else ``interrupted.ckpt``."""
    if path.is_dir():
        reported = _reported_checkpoint(path)
        if reported is not None:
            return reported
        for candidate in ("checkpoints/last.ckpt", "checkpoints/interrupted.ckpt"):
            if (path / candidate).is_file():
                return path / candidate
        raise ConfigError(f"{path}: no checkpoints/last.ckpt in this run folder")
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint or run folder")
    return path


@app.command()
@handle_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the metrics as JSON.")
    ] = None,
    overwrite: Overwrite = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by", help="Also give the metrics per group of this manifest column "
            "('source': the source name), the worst group and the gap."
        ),
    ] = None,
    groups: Annotated[
        Path | None,
        typer.Option(help="CSV/Parquet with the samples' id and the --by column "
                     "(default: each source's manifest)."),
    ] = None,
) -> None:
    """Evaluate a trained model on the test (or validation) split of its config's data."""
    if split not in ("test", "val"):
        raise typer.BadParameter("split must be 'test' or 'val'", param_hint="--split")
    if output is not None:
        check_output_file(output, overwrite)
    ckpt = _resolve_checkpoint(run)

    from dmtl.build.checkpoint import load_trained
    from dmtl.build.data import build_experiment
    from dmtl.cli.render import metrics_table
    from dmtl.inference.evaluate import evaluate_trained

    trained = load_trained(ckpt)
    with warnings_as_lines():
        experiment = build_experiment(trained.config)
    metrics = evaluate_trained(trained, experiment, split, str(ckpt))
    console.print(metrics_table(metrics, f"{ckpt}: {split} metrics"))
    document = {"checkpoint": str(ckpt), "split": split, "metrics": metrics}
    if by is not None:
        from dmtl.cli.groups_cmd import report_groups

        document["groups"] = report_groups(trained, experiment, split, by, groups)
    if output is not None:
        output.write_text(json.dumps(document, indent=2))


@app.command()
@handle_errors
def study(
    config: ConfigArg,
    seeds: Annotated[
        int | None, typer.Option(help="Number of seeds (default: study.seeds).", min=1)
    ] = None,
    set_: Overrides = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Study folder (default: output.dir).")
    ] = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    variants: Variants = None,
    allow_config_change: AllowConfigChange = False,
    jobs: Jobs = "1",
    by: Annotated[
        str | None,
        typer.Option("--by", help="Also give each run's metrics per group of this manifest "
                     "column, the worst group and the gap (study.group_by)."),
    ] = None,
    groups: Annotated[
        Path | None,
        typer.Option(help="CSV/Parquet with the samples' id and the --by column "
                     "(study.groups; default: each source's manifest)."),
    ] = None,
) -> None:
    """The ablation: single-task, MTL, +co-annotation, +distribution matching, both; over seeds.

    --resume goes on where the study stopped (an interrupted run from its checkpoint);
    more seeds (--seeds) or variants (--variants) may be added.
    """
    from dmtl.build.check import checked_config
    from dmtl.config import variant_problems

    overrides = [*(set_ or []), *_group_overrides(by, groups)]
    cfg = _chosen_variants(checked_config(config, overrides), variants)
    if problems := variant_problems(cfg):  # before any run starts or any data loads
        raise ConfigError(problems, config)
    if allow_config_change and not resume:
        raise ConfigError([("--allow-config-change", "only applies with --resume")])
    folder = check_output_folder(out or cfg.output.dir, "--out" if out else "output.dir")
    if not resume:  # refused at once, before torch is imported (a resume is checked later)
        from dmtl.training.rundir import check_run_dir

        check_run_dir(folder, resume, overwrite)
    cfg = _chosen_variants(cfg, variants)
    _run_study(cfg, folder, seeds, resume, overwrite, _jobs(jobs), allow_config_change)


def _group_overrides(by: str | None, groups: Path | None) -> list[str]:
    """``--by`` and ``--groups`` as ``--set`` overrides (quoted: YAML reads them as text;
    the file relative to the working folder)."""
    overrides = [f"study.group_by={json.dumps(by)}"] if by is not None else []
    if groups is not None:
        overrides.append(f"study.groups={json.dumps(os.path.abspath(groups))}")
    return overrides


def _study_warnings(message: str) -> None:
    """The study's progress lines that the progress view does not show: its warnings."""
    if message.startswith("warning: "):
        warn_line(message.removeprefix("warning: "))


def _chosen_variants(cfg: Config, variants: str | None) -> Config:
    """``cfg`` with ``study.variants`` from ``--variants`` when given (checked before training)."""
    if variants is None:
        return cfg
    from dmtl.study.study import with_variants

    return with_variants(cfg, variants)


def _run_study(
    cfg: Config,
    out: Path,
    seeds: int | None,
    resume: bool,
    overwrite: bool,
    jobs: int,
    allow_config_change: bool = False,
) -> None:
    from dmtl.cli.progress import StudyProgressView
    from dmtl.cli.render import print_study_table

    if jobs > 1:  # the workers' fork server imports torch and Lightning while this does too
        from dmtl.study.parallel import STUDY_PRELOAD, warm_up

        warm_up(STUDY_PRELOAD)
    from dmtl.study.study import run_study
    from dmtl.training.interrupt import INTERRUPT_EXIT_CODE, TrainingInterrupted

    try:
        with quiet_lightning(), StudyProgressView(console) as view:
            results = run_study(
                cfg,
                out,
                seeds,
                resume=resume,
                overwrite=overwrite,
                allow_config_change=allow_config_change,
                progress=_study_warnings,
                command=_command_line(),
                jobs=jobs,
                observer=view,
            )
    except KeyboardInterrupt as stopped:  # TrainingInterrupted, or Ctrl-C in a parallel study
        saved = f"{stopped.message}\n" if isinstance(stopped, TrainingInterrupted) else ""
        console.print(
            f"{saved}Study interrupted; finished runs are in {out / 'results.json'}. "
            "Resume the study with --resume.",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(code=INTERRUPT_EXIT_CODE) from None
    print_study_table(console, results)
    from dmtl.study.report import budget_warning

    if (budget := budget_warning(results)) is not None:
        warn_line(budget)
    n = len(results.commands)
    over = f" (wall time of its {n} commands)" if n > 1 else ""
    console.print(
        f"study done in {results.wall_s or 0:.0f} s{over}: [bold]{out / 'report.md'}[/], "
        f"{out / 'results.json'}",
        soft_wrap=True,  # a path is not broken across lines, on a terminal or in a log
    )


@app.command()
@handle_errors
def demo(
    seeds: Annotated[int, typer.Option(help="Number of seeds.", min=1)] = 3,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Study folder (default: runs/demo-<time>)."),
    ] = None,
    set_: Overrides = None,
    variants: Variants = None,
    jobs: Jobs = "auto",
) -> None:
    """The study on built-in digits with 3% of the digit labels (about a minute on 2 cores)."""
    from dmtl.build.check import checked_config
    from dmtl.config import variant_problems

    config_file = resources.files("dmtl") / "configs" / "digits-demo.yaml"
    with resources.as_file(config_file) as path:
        cfg = _chosen_variants(checked_config(path, set_ or []), variants)
    if problems := variant_problems(cfg):
        raise ConfigError(problems)
    folder = check_output_folder(
        out or Path("runs") / f"demo-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    from dmtl.training.rundir import check_run_dir

    check_run_dir(folder)  # refused at once, before torch is imported
    cfg = _chosen_variants(cfg, variants)
    n_jobs = _jobs(jobs)
    console.print(
        f"[bold]dmtl demo[/]: {cfg.name}, {seeds} seed(s), backbone {cfg.backbone.name}, "
        f"{cfg.trainer.max_epochs} epochs, {n_jobs} run(s) at once -> {folder}"
    )
    _run_study(cfg, folder, seeds, resume=False, overwrite=False, jobs=n_jobs)


def main() -> None:
    """Entry point of the ``dmtl`` script."""
    app()
