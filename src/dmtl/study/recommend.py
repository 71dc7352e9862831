r"""Which variant to use: picked on validation labels only, then checked per task (a task it
hurts keeps its single-task model), then the test results of what is used.

**Gain on validation.** For variant ``v`` and task ``t`` (primary metric), the gain over
the single-task model on the validation split, paired by seed:
``g(v, t) = mean_s [val(v, t, s) − val(single_task[t], s)]``. Validation labels follow the
regime, so a scarce task is judged on few labels: the noise is measured, not assumed.

**Noise.** ``σ_t`` = the pooled standard deviation over seeds of ``val(·, t, ·)``:
``sqrt(mean over variants of s²(v, t))`` (sample variances, variants with ≥ 2 seeds).

**Score, as deployed.** ``score(v) = mean_t u(v, t)`` with ``u(v, t) = g(v, t) / σ_t``,
except ``u(v, t) = 0`` when ``g(v, t) < −SE_t`` (``SE_t = σ_t·sqrt(2/n)``, below): such a
task would keep its single-task model (Per task), so ``v`` is scored by what it would
deliver. ``single_task`` scores 0. Every task counts the same, in units of its own noise,
so a task measured on 10 labels does not outweigh one measured on 1,000. With one seed (no
``σ``) the raw gains are averaged.

**Choice.** The best score wins, except that a variant earlier in :data:`PREFERENCE`
whose score is within noise of the best is preferred: within noise means
``score(best) − score(v) < 2 / sqrt(n·T)`` (``n`` seeds, ``T`` tasks: about one standard
error of the difference of two scores, each a mean of ``n·T`` gains of standard error
``sqrt(2/n)``); with one seed, only an exact tie. Preference: the library's default, the
paper's method ``mtl+ca+dm``, first (another variant replaces it only when better beyond
noise), then the simpler before the more complex (one model before ``T`` models; fewer
terms and parameters first). Ties go the same way.

**Check.** The chosen variant's validation gain on each task: ``negative transfer``
when ``g < −σ_t`` (the report's rule for test, applied to validation); ``under-trained``
when a run behind it reached its epoch budget; no verdict with one seed (no ``σ_t``).

**Per task.** With ``v*`` the chosen variant, the model used for task ``t`` is
``use(t) = single_task[t]`` if ``g(v*, t) < −SE_t`` (the study already trained that
model), else ``v*``, where ``SE_t = σ_t · sqrt(2/n)`` is the standard error of the gain
(a mean over ``n`` seeds of differences of two runs, each of std ``σ_t``; the choice's
band uses the same ``sqrt(2/n)``). The bar is lower than the check's ``−σ_t`` (for
``n ≥ 2``, ``SE_t ≤ σ_t``) because the two errors cost differently: a task that falls back
loses only a gain its validation labels do not show, a task kept on a variant that hurts
it breaks the promise that no task pays. It holds for an under-trained task too: that
verdict says the gap is not transfer, but the models at hand are the ones to use. With one
seed (no ``σ_t``) no task falls back. The recommendation is ``v*`` for the tasks
it keeps, with each fallback and its reason; when every task falls back, it is
``single_task``. The choice of ``v*`` is not changed by the fallbacks.

**Test.** Each task's test gain is that of ``use(t)`` over single-task (0 for a task that
keeps its single-task model), reported as measured: neither the choice nor a fallback
reads the test split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dmtl.study.results import BASELINE, RunRecord, StudyResults
from dmtl.study.statistics import budget_reached, cell, negative_transfer, signed

PREFERENCE: tuple[str, ...] = (
    "mtl+ca+dm",
    "mtl",
    "mtl+ca",
    "mtl+dm",
    "mtl+ca+dm+uw",
    "mtl+ca+dm+guard",
    "mtl+ca+dm+upgrad",
    "mtl+ca+dm+branch",
    "mtl+ca+dm+mmoe",
    "mtl+ca+dm+ple",
    BASELINE,
)
"""The order a tie within noise goes by: the paper's method (the default), then from simplest to
most complex; unknown names go before ``single_task``."""

NEGATIVE = "negative transfer"
"""The verdict for a gain below ``−σ_t`` (validation) or below one pooled std (test)."""


@dataclass(frozen=True)
class TaskCheck:
    """One task: the chosen variant's validation gain and verdict (what decides a fallback),
    and the test gain of the model used for the task (``variant``)."""

    metric: str
    val_gain: float | None
    val_noise: float | None
    verdict: str
    test_gain: float | None
    test_pooled_std: float | None
    test_verdict: str
    variant: str | None = None
    """The model used for this task: the chosen variant, or ``single_task`` (a fallback)."""


@dataclass(frozen=True)
class Fallback:
    """A task that keeps its single-task model: ``variant`` (the chosen one) shows negative
    transfer on it on validation, ``val_gain < −val_noise``."""

    task: str
    variant: str
    val_gain: float
    val_noise: float
    reason: str


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` found (``variant`` is ``None`` when nothing could be compared).

    ``variant`` is the chosen variant, used for every task in ``per_task`` not named in
    ``fallbacks`` (those keep ``single_task``); ``single_task`` when every task falls back.
    """

    variant: str | None
    reason: str
    scores: dict[str, float] = field(default_factory=dict)
    within_noise: list[str] = field(default_factory=list)
    noise_band: float | None = None
    tasks: dict[str, TaskCheck] = field(default_factory=dict)
    per_task: dict[str, str] = field(default_factory=dict)
    fallbacks: list[Fallback] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _val(run: RunRecord, metric: str) -> float | None:
    if run.status != "done" or (run.task is not None and metric.split("/", 1)[0] != run.task):
        return None
    value = run.val_metrics.get(metric)
    return float(value) if value is not None and math.isfinite(value) else None


def validation_values(results: StudyResults, variant: str, metric: str) -> dict[int, float]:
    """``{seed: validation value}`` of ``metric`` for ``variant``."""
    return {
        run.seed: value
        for run in results.runs
        if run.variant == variant and (value := _val(run, metric)) is not None
    }


def _noise(results: StudyResults, metric: str) -> float | None:
    variances = [
        float(np.var(list(values.values()), ddof=1))
        for v in results.variants
        if len(values := validation_values(results, v, metric)) > 1
    ]
    if not variances:
        return None
    pooled = math.sqrt(sum(variances) / len(variances))
    return pooled if pooled > 0 else None


def validation_gains(results: StudyResults, variant: str) -> dict[str, float | None]:
    """``{task: g(variant, task)}`` (``None`` when no seed has both sides)."""
    gains: dict[str, float | None] = {}
    for task, metric in results.primary_metrics().items():
        mine = validation_values(results, variant, metric)
        single = validation_values(results, BASELINE, metric)
        paired = [mine[s] - single[s] for s in mine if s in single]
        gains[task] = sum(paired) / len(paired) if paired else None
    return gains


def _score(gains: dict[str, float | None], noise: dict[str, float | None],
           seeds: int) -> float | None:
    """``mean_t u(v, t)``, a task that would fall back counting 0 (module docstring)."""
    units = []
    for task, gain in gains.items():
        if gain is None:
            continue
        sigma = noise[task]
        if not sigma:
            units.append(gain)
        elif seeds >= 2 and gain < -sigma * math.sqrt(2.0 / seeds):
            units.append(0.0)  # this task would keep its single-task model
        else:
            units.append(gain / sigma)
    return sum(units) / len(units) if units else None


def _rank(name: str) -> int:
    if name in PREFERENCE:
        return PREFERENCE.index(name)
    return PREFERENCE.index(BASELINE) - 1


def choose(scores: dict[str, float], band: float) -> tuple[str, list[str]]:
    """The first variant of :data:`PREFERENCE` within ``band`` of the best score, and every
    one within it.

    >>> choose({"mtl": 0.4, "mtl+ca+dm": 0.5, "mtl+ca+dm+branch": 1.5}, band=0.2)
    ('mtl+ca+dm+branch', ['mtl+ca+dm+branch'])
    >>> choose({"mtl": 0.4, "mtl+ca+dm": 0.5, "single_task": 0.0}, band=0.2)
    ('mtl+ca+dm', ['mtl+ca+dm', 'mtl'])
    >>> choose({"mtl": 0.45, "mtl+ca": 0.5, "mtl+ca+dm": 0.1}, band=0.2)
    ('mtl', ['mtl', 'mtl+ca'])
    """
    best = max(scores.values())
    close = sorted((v for v, s in scores.items() if best - s <= band + 1e-12), key=_rank)
    return close[0], close


def recommend(results: StudyResults) -> Recommendation:
    """The recommendation of a study (see the module for every rule)."""
    primaries = results.primary_metrics()
    if BASELINE not in results.variants or len(results.variants) < 2:
        return Recommendation(None, "needs single_task and at least one multi-task variant")
    noise = {t: _noise(results, m) for t, m in primaries.items()}
    gains = {v: validation_gains(results, v) for v in results.variants if v != BASELINE}
    seeds = len(results.seeds)
    scores = {v: s for v, g in gains.items() if (s := _score(g, noise, seeds)) is not None}
    if not scores:
        return Recommendation(None, "no validation metrics to compare (runs without a "
                                    "validation split, or from a dmtl before 0.x)")
    scores[BASELINE] = 0.0
    normalised = all(noise.values())
    band = 2.0 / math.sqrt(seeds * len(primaries)) if normalised and seeds > 1 else 0.0
    chosen, close = choose(scores, band)
    verdicts = {t: _val_verdict(results, chosen, t, gains.get(chosen, {}).get(t), noise[t])
                for t in primaries}
    fallbacks = [f for t in primaries
                 if (f := _fallback(t, chosen, gains.get(chosen, {}).get(t), noise[t],
                                    verdicts[t], seeds)) is not None]
    per_task = {t: chosen for t in primaries} | {f.task: BASELINE for f in fallbacks}
    variant = BASELINE if all(v == BASELINE for v in per_task.values()) else chosen
    reason = _reason(chosen, scores, close, band, normalised)
    if variant != chosen:
        reason += (f"; {chosen} was chosen but is below single-task on validation on "
                   f"every task ({fallback_text(fallbacks)}), so every task "
                   f"keeps its single-task model")
    checks = _checks(results, per_task, gains.get(chosen, {}), noise, verdicts)
    return Recommendation(variant, reason, scores, close, band if normalised else None,
                          checks, per_task, fallbacks)


def _val_verdict(results: StudyResults, variant: str, task: str, gain: float | None,
                 sigma: float | None) -> str:
    """The chosen variant's verdict on ``task`` from validation (module docstring, Check)."""
    if variant == BASELINE:
        return "baseline"
    if gain is None:
        return "n/a"
    if budget_reached(results, variant, task):
        return "under-trained (not counted)"
    if sigma is None:
        return "n/a (1 seed)"
    return NEGATIVE if gain < -sigma else "none"


def _fallback(task: str, variant: str, gain: float | None, sigma: float | None,
              verdict: str, seeds: int) -> Fallback | None:
    """``task`` keeps its single-task model when ``gain < −σ·sqrt(2/n)`` (module
    docstring, Per task)."""
    if variant == BASELINE or gain is None or sigma is None or seeds < 2:
        return None
    error = sigma * math.sqrt(2.0 / seeds)
    if gain >= -error:
        return None
    rule = f"gain {signed(gain)} < −σ·√(2/n) = {signed(-error)}"
    if verdict == NEGATIVE:
        return Fallback(task, variant, gain, sigma, f"negative transfer on validation, {rule}")
    if verdict.startswith("under-trained"):
        return Fallback(task, variant, gain, sigma, f"below single-task on validation, {rule} "
                                                    f"({verdict.removesuffix(' (not counted)')}"
                                                    f": a run reached its epoch budget)")
    return Fallback(task, variant, gain, sigma, f"below single-task on validation by more "
                                                f"than the gain's standard error, {rule}")


def fallback_text(fallbacks: Sequence[Fallback]) -> str:
    """``"ink: negative transfer on validation, gain −0.022 < −σ·√(2/n) = −0.011"``, one per
    fallback, ``"; "`` between."""
    return "; ".join(f"{f.task}: {f.reason}" for f in fallbacks)


def _checks(
    results: StudyResults, per_task: dict[str, str], gains: dict[str, float | None],
    noise: dict[str, float | None], verdicts: dict[str, str],
) -> dict[str, TaskCheck]:
    """Validation: the chosen variant's gain and verdict; test: the model used for the task."""
    tests = negative_transfer(results)
    checks = {}
    for task, metric in results.primary_metrics().items():
        use = per_task[task]
        test = tests.get(use, {}).get(task)
        if test is None:  # the task keeps its single-task model: no gain over itself
            test_gain = 0.0 if cell(results, BASELINE, metric).n else None
            test_verdict = "baseline"
        else:
            test_gain = test.gain
            test_verdict = ("under-trained (not counted)" if test.under_trained else
                            NEGATIVE if test.negative else
                            "n/a (1 seed)" if not test.decidable else "none")
        checks[task] = TaskCheck(metric, gains.get(task), noise.get(task), verdicts[task],
                                 test_gain, None if test is None else test.pooled_std,
                                 test_verdict, use)
    return checks


def _reason(variant: str, scores: dict[str, float], close: Sequence[str], band: float,
            normalised: bool) -> str:
    unit = ("validation gain over single-task in units of each task's noise, 0 for a task "
            "that would keep its single-task model") if normalised \
        else "raw validation gain over single-task (one seed: noise not measured)"
    best = max(scores, key=lambda v: scores[v])
    text = f"score = mean over tasks of the {unit}; {variant}: {scores[variant]:+.2f}"
    if best != variant:
        others = ", ".join(v for v in close if v != variant)
        why = ("the default, the paper's method" if variant == PREFERENCE[0]
               else "earlier in the preference order")
        text += (f"; the best, {best} ({scores[best]:+.2f}), is within noise "
                 f"(band {band:.2f}) and {variant} is {why}; also within noise: {others}")
    elif len(close) > 1:
        text += f"; within noise (band {band:.2f}): {', '.join(close[1:])}"
    return text


def headline(rec: Recommendation) -> str:
    """The recommendation in one line of Markdown.

    ``**Use `mtl+ca+dm`**`` when every task keeps the chosen variant; else
    ``**Use `mtl+ca+dm` for digit, shape; the single-task model for ink** (ink: negative
    transfer on validation, gain −0.022 < −σ·√(2/n) = −0.011)``.
    """
    fallen = [f.task for f in rec.fallbacks]
    if rec.variant is None or not fallen or rec.variant == BASELINE:
        return f"**Use `{rec.variant}`**"
    kept = [t for t, v in rec.per_task.items() if v != BASELINE]
    models = "the single-task model" if len(fallen) == 1 else "single-task models"
    return (f"**Use `{rec.variant}` for {', '.join(kept)}; {models} for {', '.join(fallen)}** "
            f"({fallback_text(rec.fallbacks)})")


def recommended_runs(results: StudyResults, per_task: dict[str, str],
                     seed: int) -> list[tuple[str, list[str]]] | None:
    """The run folders (relative to the study folder) of ``seed`` that serve the tasks of
    ``per_task`` (``{task: variant}``, a recommendation's), each with its tasks; ``None``
    if one of them has no finished run of that seed."""
    folders: dict[str, list[str]] = {}
    for task, variant in per_task.items():
        run = next((r for r in results.runs if r.status == "done" and r.run_dir
                    and r.seed == seed and r.variant == variant
                    and (variant != BASELINE or r.task == task)), None)
        if run is None or run.run_dir is None:
            return None
        folders.setdefault(run.run_dir, []).append(task)
    return list(folders.items())


def models_line(results: StudyResults, rec: Recommendation) -> str | None:
    """Where the recommended models are, in the study folder: ``"Models:
    `runs/seed<s>/mtl+ca+dm` for digit, shape; `runs/seed<s>/single_task-ink` for ink (any
    seed s of 0, 1, 2; ...)."`` (``None`` without a recommendation or a run of it)."""
    if rec.variant is None or not results.seeds:
        return None
    seed = results.seeds[0]
    runs = recommended_runs(results, rec.per_task, seed)
    if runs is None:
        return None
    parts = "; ".join(
        "`{}` for {}".format("/".join("seed<s>" if part == f"seed{seed}" else part
                                      for part in folder.split("/")), ", ".join(tasks))
        for folder, tasks in runs)
    seeds = ", ".join(map(str, results.seeds))
    return (f"Models: {parts} (any seed s of {seeds}; `dmtl predict`, `evaluate` and "
            f"`export` take the folder; `dmtl predict` takes the study folder for them all).")


def recommendation_lines(rec: Recommendation) -> list[str]:
    """The recommendation as Markdown lines (the report's opening section)."""
    if rec.variant is None:
        return [f"No recommendation: {rec.reason}."]
    if rec.fallbacks and rec.variant != BASELINE:
        out = [f"{headline(rec)}.", "",
               f"`{rec.variant}` chosen on validation labels only ({rec.reason}); a task "
               f"where it is below single-task on validation by more than the gain's "
               f"standard error (g < −σ·√(2/n), n seeds) keeps its single-task model, which "
               f"the study trained."]
    else:
        out = [f"{headline(rec)} (chosen on validation labels only; {rec.reason})."]
    chosen = rec.fallbacks[0].variant if rec.fallbacks else rec.variant
    out += ["", f"| task | model used | validation gain of {chosen} | noise σ "
                "| verdict (validation) | test gain of the model used | verdict (test) |",
            "|---|---|---|---|---|---|---|"]
    for task, c in rec.tasks.items():
        def num(x: float | None) -> str:
            return "n/a" if x is None else signed(x)
        sigma = "n/a" if c.val_noise is None else f"{c.val_noise:.3f}"
        out.append(f"| {task} ({c.metric.split('/', 1)[1]}) | {c.variant} "
                   f"| {num(c.val_gain)} | {sigma} | {c.verdict} | {num(c.test_gain)} "
                   f"| {c.test_verdict} |")
    return out


__all__ = [
    "PREFERENCE",
    "Fallback",
    "Recommendation",
    "TaskCheck",
    "choose",
    "fallback_text",
    "headline",
    "recommend",
    "recommendation_lines",
    "recommended_runs",
    "validation_gains",
    "validation_values",
]
