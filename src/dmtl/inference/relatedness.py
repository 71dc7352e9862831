r"""Relatedness tables from a trained model's predictions (method.md section 3.3).

When no image is labelled for both tasks of an edge A -> B, a model trained on both
(each from its own data) can still relate them: over unlabelled images ``x``, soft counts

    n_c = sum_x p_A(c|x),    n_cj = sum_x p_A(c|x) p_B,j(x),
    R[c, j] = (n_cj + alpha * m_j) / (n_c + alpha),    m_j = sum_c n_cj / sum_c n_c

(:meth:`~dmtl.core.estimation.RelatednessEstimator.update_from_predictions`); with
``alpha = 0``, ``R[c, j] = sum_x p_A(c|x) p_B,j(x) / sum_x p_A(c|x)``. A binary-set B
uses its per-label probabilities ``sigmoid(z_j)``, a categorical B its class
probabilities ``softmax(z)`` (rows of R then sum to 1).

The model is any :class:`~dmtl.inference.runtime.Predictor` (a checkpoint, an ONNX or a
TorchScript file); the inputs are sources prepared as the model expects (see
:func:`~dmtl.inference.predict.input_source`). The table is written with
:meth:`~dmtl.core.relatedness.Relatedness.to_csv`, which a config edge reads with
``kind: table``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dmtl.core.estimation import RelatednessEstimator
from dmtl.core.relatedness import Relatedness
from dmtl.data.batching import build_eval_loader
from dmtl.data.sources import Source
from dmtl.errors import DataError, SpecError
from dmtl.inference.runtime import Predictor


@dataclass(frozen=True)
class PredictedEdge:
    """An edge estimated from predictions, with the number of inputs it was counted over."""

    edge: Relatedness
    num_inputs: int


def estimate_from_predictions(
    predictor: Predictor,
    sources: Sequence[Source],
    edges: Sequence[tuple[str, str]],
    alpha: float = 1.0,
    batch_size: int = 256,
) -> list[PredictedEdge]:
    """Estimate each ``(source task, target task)`` edge from ``predictor`` over ``sources``.

    Every input is predicted once, whatever the number of edges. The sources' inputs
    must have the model's input shape (a :class:`DataError` says which differs).
    """
    card = predictor.card
    estimators = [_estimator(predictor, a, b, alpha) for a, b in edges]
    if not estimators:
        raise SpecError("no edge to estimate: give a source task and a target task")
    for source in sources:
        if len(source) and tuple(source.input_shape) != tuple(card.input_shape):
            raise DataError(
                f"source {source.name!r}: inputs of shape {tuple(source.input_shape)}, but the "
                f"model was trained on inputs of shape {tuple(card.input_shape)}"
            )
    used = [s.with_augment(None) for s in sources if len(s)]
    if not used:
        raise DataError("no input to predict: the sources are empty")
    loader = build_eval_loader(used, batch_size=batch_size, tasks=list(card.tasks))
    for batch in loader:
        probabilities = predictor.probabilities(batch.x)
        for estimator in estimators:
            estimator.update_from_predictions(
                probabilities[estimator.source.name], probabilities[estimator.target.name]
            )
    return [PredictedEdge(e.compute(), int(e.num_samples)) for e in estimators]


def _estimator(
    predictor: Predictor, source: str, target: str, alpha: float
) -> RelatednessEstimator:
    card = predictor.card
    names = [t.name for t in card.tasks]
    for name in (source, target):
        if name not in names:
            raise SpecError(f"the model has no task {name!r}; its tasks: {', '.join(names)}")
    task_a, task_b = card.task(source), card.task(target)
    if not task_a.can_be_edge_source:
        raise SpecError(
            f"edge {source}->{target}: the source task must be categorical, {source!r} is "
            f"{task_a.kind}"
        )
    return RelatednessEstimator(task_a, task_b, alpha=alpha)  # type: ignore[arg-type]


__all__ = ["PredictedEdge", "estimate_from_predictions"]
