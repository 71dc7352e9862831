"""Faces followed across the frames of a video, and their predictions smoothed in time.

:class:`IouTracker` gives each detected box the id of the track whose last box it
overlaps most (intersection over union at least ``min_iou``), greedily, the best pairs
first. Frames far apart (``--every``) or a fast face may leave no overlap: a pair whose
centres lie within ``max_shift`` times their mean side, with sides within a factor
``max_scale``, still matches, after every overlapping pair. An unmatched box starts a
new track; a track not seen for ``max_age`` frames ends.
:func:`ema` smooths a track's values: ``s_1 = x_1``, ``s_t = a x_t + (1 - a) s_{t-1}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dmtl.data.crops import Box


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes ``(x, y, w, h)``.

    >>> iou((0, 0, 2, 2), (1, 0, 2, 2))
    0.3333333333333333
    """
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    id: int
    box: Box
    last_seen: int


class IouTracker:
    """Track ids for the boxes of successive frames (see the module docstring).

    >>> tracker = IouTracker()
    >>> tracker.update([(0, 0, 10, 10), (50, 50, 10, 10)])
    [0, 1]
    >>> tracker.update([(52, 51, 10, 10), (1, 1, 10, 10)])
    [1, 0]
    """

    def __init__(
        self, min_iou: float = 0.3, max_age: int = 10, max_shift: float = 1.0,
        max_scale: float = 1.5,
    ) -> None:
        self.min_iou, self.max_age = min_iou, max_age
        self.max_shift, self.max_scale = max_shift, max_scale
        self.tracks: list[_Track] = []
        self.next_id = 0
        self.step = 0

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """The track id of each box of the next frame."""
        self.step += 1
        self.tracks = [t for t in self.tracks if self.step - t.last_seen <= self.max_age]
        pairs = sorted(
            (
                (self._affinity(track.box, box), t, b)
                for t, track in enumerate(self.tracks)
                for b, box in enumerate(boxes)
            ),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for affinity, t, b in pairs:
            if affinity <= 0.0:
                break
            if t in used or ids[b] is not None:
                continue
            used.add(t)
            ids[b] = self.tracks[t].id
            self.tracks[t].box, self.tracks[t].last_seen = boxes[b], self.step
        for b, box in enumerate(boxes):
            if ids[b] is None:
                ids[b] = self.next_id
                self.tracks.append(_Track(self.next_id, box, self.step))
                self.next_id += 1
        return [int(i) for i in ids if i is not None]

    def _affinity(self, a: Box, b: Box) -> float:
        """``1 + IoU`` for boxes that overlap enough; ``1 - d / (max_shift * side)`` in
        (0, 1] for near ones (``d`` the centre distance, ``side`` the mean side); else 0."""
        overlap = iou(a, b)
        if overlap >= self.min_iou:
            return 1.0 + overlap
        side = (a[2] + a[3] + b[2] + b[3]) / 4
        ratio = max(a[2], b[2]) / max(min(a[2], b[2]), 1e-9)
        dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
        dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
        reach = self.max_shift * side
        distance = float(np.hypot(dx, dy))
        if ratio > self.max_scale or distance >= reach:
            return 0.0
        return 1.0 - distance / reach


def ema(values: np.ndarray, groups: Sequence[object], alpha: float) -> np.ndarray:
    """Exponential moving average of the rows of ``values`` ``(N, K)`` within each group,
    rows taken in order: ``s = a x + (1 - a) s_prev`` (the first row of a group as it is).

    >>> ema(np.array([[0.0], [1.0], [1.0], [5.0]]), ["a", "a", "a", "b"], 0.5).ravel().tolist()
    [0.0, 0.5, 0.75, 5.0]
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"the smoothing factor must lie in (0, 1], got {alpha}")
    out = np.array(values, dtype=np.float64, copy=True)
    last: dict[object, np.ndarray] = {}
    for row, group in enumerate(groups):
        if group in last:
            out[row] = alpha * out[row] + (1.0 - alpha) * last[group]
        last[group] = out[row]
    return out


__all__ = ["IouTracker", "ema", "iou"]
