r"""The multi-task objective: supervised + co-annotation + distribution-matching terms.

``L = sum_t w_t L_t + lambda_ca sum_edges L_CA + lambda_dm sum_edges (L_DM(A->B) + L_DM(B->A))``

``L_t`` is task t's own supervised loss (its kind's ``loss``: cross-entropy, binary
cross-entropy, squared error or concordance). It returns the total and a named
breakdown of every term, for logging: ``sup/<task>``, ``ca/<from>-><to>`` and
``dm/<from>-><to>`` (when edges ``A->B`` and ``B->A`` both exist, a term named twice
gets the edge it comes from: ``dm/B->A[A->B]``).

Every term trains one task's head: ``sup/t`` task t, ``ca/a->b`` and ``dm/a->b`` task b.
:meth:`Objective.task_losses` groups the weighted terms by that task,
``L_t^total = w_t L_t + lambda_ca sum_{ca/*->t} + lambda_dm sum_{dm/*->t}``, so that
``sum_t L_t^total = L``: what a loss weighting or a gradient aggregator works on.

>>> import torch
>>> from dmtl.core.labels import collate_labels
>>> from dmtl.core.relatedness import Relatedness
>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> digit, attr = CategoricalTask("digit", ["0", "1"]), BinarySetTask("attr", ["odd"])
>>> edge = Relatedness(digit, attr, torch.tensor([[0.0], [1.0]]))
>>> objective = Objective([digit, attr], [edge], co_annotation="soft", distribution_matching=True)
>>> logits = {"digit": torch.zeros(2, 2), "attr": torch.zeros(2, 1)}
>>> labels = collate_labels([digit, attr], [{"digit": 1}, {"attr": [0]}])
>>> loss, terms = objective(logits, labels)
>>> sorted(terms)
['ca/attr->digit', 'ca/digit->attr', 'dm/attr->digit', 'dm/digit->attr', 'sup/attr', 'sup/digit']
>>> per_task = objective.task_losses(logits, labels)
>>> sorted(per_task), torch.allclose(sum(per_task.values()), loss)
(['attr', 'digit'], True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from torch import Tensor, nn

from dmtl.core.coannotation import CoAnnotationMode, co_annotation_losses
from dmtl.core.labels import PartialLabels
from dmtl.core.maps import check_eps_tau, check_prior
from dmtl.core.matching import distribution_matching_losses
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import Task, check_unique_task_names
from dmtl.errors import SpecError


class Term(NamedTuple):
    """One term of the objective: its name, the task whose head it trains, weight, value."""

    name: str
    task: str
    weight: float
    value: Tensor


class Objective(nn.Module):
    """Combines tasks and relatedness edges into one loss (method.md sections 2, 5, 6).

    Args:
        tasks: the tasks, each with a head producing logits.
        edges: relatedness edges A -> B between those tasks.
        task_weights: ``w_t`` per task name (default 1).
        co_annotation: ``"off"``, ``"soft"`` (targets ``R[c,:]`` / the inverse posterior)
            or ``"hard"`` (thresholded).
        lambda_ca: weight of the co-annotation terms.
        ca_eps, ca_tau: clamp and temperature of the inverse map with *label* evidence.
        hard_threshold: minimum probability of a hard categorical co-annotation target.
        distribution_matching: add the distribution-matching terms.
        dm_forward, dm_inverse: switch each direction A->B / B->A on or off.
        lambda_dm: weight of the distribution-matching terms (scaled by ``dm_scale`` at call
            time, e.g. for a warm-up).
        dm_eps, dm_tau: clamp and temperature of the inverse map with *predicted* evidence.
            Defaults ``eps = 0.05`` and ``tau = 3``: an almost-hard table makes the inverse
            posterior near one-hot even from uncertain predictions (method.md section 4).
        stop_gradient: detach the DM targets (default; see method.md section 6).
        priors: class prior ``pi`` per categorical source task (default uniform).

    Per-task loss options (class weights, positive weights, label smoothing, the
    regression loss) belong to the tasks themselves (``task.with_options``).
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        edges: Sequence[Relatedness] = (),
        *,
        task_weights: Mapping[str, float] | None = None,
        co_annotation: CoAnnotationMode = "off",
        lambda_ca: float = 1.0,
        ca_eps: float = 0.05,
        ca_tau: float = 1.0,
        hard_threshold: float = 0.5,
        distribution_matching: bool = False,
        dm_forward: bool = True,
        dm_inverse: bool = True,
        lambda_dm: float = 1.0,
        dm_eps: float = 0.05,
        dm_tau: float = 3.0,
        stop_gradient: bool = True,
        priors: Mapping[str, Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.tasks = list(tasks)
        by_name = check_unique_task_names(self.tasks)
        self.edges = list(edges)
        _check_arguments(by_name, self.edges, co_annotation, lambda_ca, lambda_dm)
        check_eps_tau(ca_eps, ca_tau, "co-annotation")
        check_eps_tau(dm_eps, dm_tau, "distribution matching")
        self.task_weights = {t.name: 1.0 for t in self.tasks} | dict(task_weights or {})
        unknown = sorted(set(self.task_weights) - set(by_name))
        if unknown:
            raise SpecError(f"task_weights name unknown tasks: {', '.join(unknown)}")
        self.co_annotation: CoAnnotationMode = co_annotation
        self.lambda_ca, self.ca_eps, self.ca_tau = lambda_ca, ca_eps, ca_tau
        self.hard_threshold = hard_threshold
        self.distribution_matching = distribution_matching
        self.dm_forward, self.dm_inverse = dm_forward, dm_inverse
        self.lambda_dm, self.dm_eps, self.dm_tau = lambda_dm, dm_eps, dm_tau
        self.stop_gradient = stop_gradient
        # Kept in a plain dict (moved by ``_apply``, like the tables), not as buffers: a
        # buffer name may not contain '.', and task names may.
        self._priors: dict[str, Tensor] = {}
        for name, prior in (priors or {}).items():
            task = by_name.get(name)
            if task is None or not task.can_be_edge_source:
                raise SpecError(f"priors: {name!r} is not a categorical task")
            self._priors[name] = check_prior(prior, task.num_outputs, f"priors[{name!r}]").float()
        self._names = self._term_names()
        self.term_scales: dict[str, float] = {}
        """Multipliers of single relatedness terms (default 1), e.g. set by a guard."""

    def prior(self, task: str) -> Tensor | None:
        """The class prior of a categorical task, or ``None`` (uniform)."""
        return self._priors.get(task)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """Move the edges' tables and the priors along with the module."""
        super()._apply(fn, recurse)
        for edge in self.edges:
            edge.table = fn(edge.table)
        self._priors = {k: fn(v) for k, v in self._priors.items()}
        return self

    def _term_names(self) -> dict[tuple[str, str, str], str]:
        """``(kind, edge, direction) -> logged name``, unique (see the module docstring)."""
        plain: dict[tuple[str, str, str], str] = {}
        for edge in self.edges:
            a, b = edge.source.name, edge.target.name
            for kind in ("ca", "dm"):
                for direction in (f"{a}->{b}", f"{b}->{a}"):
                    plain[(kind, edge.name, direction)] = f"{kind}/{direction}"
        counts: dict[str, int] = {}
        for name in plain.values():
            counts[name] = counts.get(name, 0) + 1
        return {
            key: name if counts[name] == 1 else f"{name}[{key[1]}]" for key, name in plain.items()
        }

    def relatedness_terms(self) -> dict[str, str]:
        """``{term name: task it trains}`` of every co-annotation and distribution-matching
        term the objective computes (with its switches as they are)."""
        out: dict[str, str] = {}
        for (kind, edge, direction), name in self._names.items():
            forward = direction == edge
            dm_on = self.dm_forward if forward else self.dm_inverse
            on = (kind == "ca" and self.co_annotation != "off" and self.lambda_ca > 0) or (
                kind == "dm" and self.distribution_matching and self.lambda_dm > 0 and dm_on
            )
            if on:
                out[name] = direction.split("->")[1]
        return out

    def terms(
        self, logits: Mapping[str, Tensor], labels: PartialLabels, dm_scale: float = 1.0
    ) -> list[Term]:
        """Every term of the objective on one batch, in a fixed order."""
        missing = [t.name for t in self.tasks if t.name not in logits]
        if missing:
            raise SpecError(f"no logits for tasks: {', '.join(missing)}")
        out: list[Term] = []
        for task in self.tasks:
            z = logits[task.name]
            loss = task.loss(z, labels[task.name]) if task.name in labels else z.sum() * 0.0
            out.append(Term(f"sup/{task.name}", task.name, self.task_weights[task.name], loss))
        for edge in self.edges:
            prior = self.prior(edge.source.name)
            if self.co_annotation != "off" and self.lambda_ca > 0:
                for direction, loss in co_annotation_losses(
                    edge, logits, labels, self.co_annotation, prior, self.ca_eps, self.ca_tau,
                    self.hard_threshold,
                ).items():
                    name = self._names[("ca", edge.name, direction)]
                    weight = self.lambda_ca * self.term_scales.get(name, 1.0)
                    out.append(Term(name, direction.split("->")[1], weight, loss))
            if self.distribution_matching and self.lambda_dm > 0:
                for direction, loss in distribution_matching_losses(
                    edge, logits, prior, self.dm_eps, self.dm_tau, self.stop_gradient,
                    self.dm_forward, self.dm_inverse,
                ).items():
                    name = self._names[("dm", edge.name, direction)]
                    weight = self.lambda_dm * dm_scale * self.term_scales.get(name, 1.0)
                    out.append(Term(name, direction.split("->")[1], weight, loss))
        return out

    def forward(
        self, logits: Mapping[str, Tensor], labels: PartialLabels, dm_scale: float = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``(total loss, {term name: value})`` for one batch.

        ``total = sum_t w_t * L_t``, summed in the terms' order; a weight of 1 multiplies
        nothing (``1 * x`` is ``x`` exactly), and with no term the total is 0 (with a
        gradient path through the logits).
        """
        terms = self.terms(logits, labels, dm_scale)
        total: Tensor | None = None
        for term in terms:
            weighted = term.value if term.weight == 1.0 else term.weight * term.value
            total = weighted if total is None else total + weighted
        if total is None:
            total = next(iter(logits.values())).sum() * 0.0
        return total, {term.name: term.value for term in terms}

    def task_losses(
        self, logits: Mapping[str, Tensor], labels: PartialLabels, dm_scale: float = 1.0
    ) -> dict[str, Tensor]:
        """``{task: weighted sum of the terms that train its head}``; they sum to the total."""
        return group_by_task(self.terms(logits, labels, dm_scale))

    def extra_repr(self) -> str:
        return (
            f"tasks={[t.name for t in self.tasks]}, edges={[e.name for e in self.edges]}, "
            f"co_annotation={self.co_annotation!r}, "
            f"distribution_matching={self.distribution_matching}, "
            f"stop_gradient={self.stop_gradient}"
        )


def _check_arguments(
    tasks: Mapping[str, Task],
    edges: Sequence[Relatedness],
    co_annotation: str,
    lambda_ca: float,
    lambda_dm: float,
) -> None:
    for edge in edges:
        for end in (edge.source, edge.target):
            if tasks.get(end.name) != end:
                raise SpecError(
                    f"edge {edge.name}: task {end.name!r} is not one of the objective's tasks "
                    "(or has different classes/labels)"
                )
    if co_annotation not in ("off", "soft", "hard"):
        raise SpecError(f"co_annotation must be 'off', 'soft' or 'hard', got {co_annotation!r}")
    for name, value in (("lambda_ca", lambda_ca), ("lambda_dm", lambda_dm)):
        if value < 0:
            raise SpecError(f"{name} must be >= 0, got {value}")


def group_by_task(terms: Sequence[Term]) -> dict[str, Tensor]:
    """``{task: sum of weight * value over its terms}``, in the order tasks first appear."""
    out: dict[str, Tensor] = {}
    for term in terms:
        weighted = term.weight * term.value
        out[term.task] = out[term.task] + weighted if term.task in out else weighted
    return out


def as_float(terms: Mapping[str, Tensor]) -> dict[str, float]:
    """Detached Python floats of a term breakdown (for logging)."""
    return {k: float(v.detach()) for k, v in terms.items()}


__all__ = ["Objective", "Term", "as_float", "group_by_task"]
