"""Built-in affect knowledge: basic expressions, FACS action units, expression -> AU relatedness.

The expression -> AU table (``expression_au.csv`` beside this module, the
single place for the numbers) is from S. Du, Y. Tao and A. M. Martinez,
"Compound facial expressions of emotion", PNAS 111(15), 2014, Table 1, as
reproduced in the FaceBehaviorNet papers (Kollias et al., arXiv 1910.11111,
2105.03790): ``R[e, AU] = p(AU active | expression e)``, 1 for prototypical
AUs (active in more than 70% of subjects), the fraction of subjects for
observational AUs, 0 otherwise. The values are as commonly reproduced; they
have not been re-checked against the PNAS table.

==========  ================  ==========================================
expression  prototypical AUs  observational AUs (weight)
==========  ================  ==========================================
happiness   12, 25            6 (0.51)
sadness     4, 15             1 (0.60), 6 (0.50), 11 (0.26), 17 (0.67)
fear        1, 4, 20, 25      2 (0.57), 5 (0.63), 26 (0.33)
anger       4, 7, 24          10 (0.26), 17 (0.52), 23 (0.29)
surprise    1, 2, 25, 26      5 (0.66)
disgust     9, 10, 17         4 (0.31), 24 (0.26)
neutral     none              none
==========  ================  ==========================================

An AU outside the table (e.g. AU14, coded by BP4D) gets weight 0 for every
expression: the table claims it is never active in a basic expression.

>>> edge = expression_au_relatedness(aus=[6, 12, 14])
>>> [round(w, 2) for w in edge.table[expression_task().index("happiness")].tolist()]
[0.51, 1.0, 0.0]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources

import torch

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.errors import SpecError

EXPRESSIONS: tuple[str, ...] = (
    "neutral",
    "anger",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
)
"""The 7 basic expressions, in class order."""

CONTEMPT = "contempt"
"""The eighth class some datasets (e.g. AffectNet) add; it has no row in the table."""

AU_NAMES: dict[int, str] = {
    1: "Inner brow raiser",
    2: "Outer brow raiser",
    4: "Brow lowerer",
    5: "Upper lid raiser",
    6: "Cheek raiser",
    7: "Lid tightener",
    8: "Lips toward each other",
    9: "Nose wrinkler",
    10: "Upper lip raiser",
    11: "Nasolabial deepener",
    12: "Lip corner puller",
    13: "Sharp lip puller",
    14: "Dimpler",
    15: "Lip corner depressor",
    16: "Lower lip depressor",
    17: "Chin raiser",
    18: "Lip pucker",
    19: "Tongue show",
    20: "Lip stretcher",
    21: "Neck tightener",
    22: "Lip funneler",
    23: "Lip tightener",
    24: "Lip pressor",
    25: "Lips part",
    26: "Jaw drop",
    27: "Mouth stretch",
    28: "Lip suck",
    41: "Lid droop",
    42: "Slit",
    43: "Eyes closed",
    44: "Squint",
    45: "Blink",
    46: "Wink",
    51: "Head turn left",
    52: "Head turn right",
    53: "Head up",
    54: "Head down",
    55: "Head tilt left",
    56: "Head tilt right",
    57: "Head forward",
    58: "Head back",
    61: "Eyes turn left",
    62: "Eyes turn right",
    63: "Eyes up",
    64: "Eyes down",
}
"""FACS codes and names (Ekman, Friesen & Hager, 2002): action units, head and eye positions."""

DISFA_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
"""The 12 AUs DISFA codes."""

BP4D_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
"""The 12 AUs usually evaluated on BP4D."""

_PACKAGE = "dmtl.knowledge"

TABLE_FILE = "expression_au.csv"
"""Name of the table inside the ``dmtl.knowledge`` package."""

_AU_PATTERN = re.compile(r"^(?:AU)?\s*0*(\d+)$", re.IGNORECASE)


def au_code(au: str | int) -> int:
    """FACS number of an AU given as ``12``, ``"12"``, ``"AU12"`` or ``"au12"``.

    >>> au_code("AU12"), au_code(4)
    (12, 4)
    """
    if isinstance(au, bool):
        raise ValueError(f"not an action unit: {au!r}")
    if isinstance(au, int):
        code = au
    else:
        match = _AU_PATTERN.match(str(au).strip())
        if match is None:
            raise ValueError(f"not an action unit: {au!r} (expected e.g. 12 or 'AU12')")
        code = int(match.group(1))
    if code not in AU_NAMES:
        raise ValueError(f"AU{code} is not a FACS action unit code; known: {sorted(AU_NAMES)}")
    return code


def au_label(au: str | int) -> str:
    """Label name ``AU<n>``.

    >>> au_label(6)
    'AU6'
    """
    return f"AU{au_code(au)}"


def au_name(au: str | int) -> str:
    """FACS name of an AU.

    >>> au_name("AU12")
    'Lip corner puller'
    """
    return AU_NAMES[au_code(au)]


def expression_task(contempt: bool = False, name: str = "expression") -> CategoricalTask:
    """The 7 basic expressions (``EXPRESSIONS`` order), plus ``contempt`` last if asked.

    >>> expression_task(contempt=True).classes[-2:]
    ('surprise', 'contempt')
    """
    return CategoricalTask(name, EXPRESSIONS + ((CONTEMPT,) if contempt else ()))


def au_task(aus: Sequence[str | int], name: str = "au") -> BinarySetTask:
    """A binary-set task with labels ``AU<n>``, in the given order.

    >>> au_task([1, "AU2", "au4"]).labels
    ('AU1', 'AU2', 'AU4')
    """
    return BinarySetTask(name, [au_label(a) for a in aus])


_build_au_task = au_task  # expression_au_relatedness's ``au_task`` argument shadows the function


def _table_aus() -> tuple[str, ...]:
    text = resources.files(_PACKAGE).joinpath(TABLE_FILE).read_text(encoding="utf-8")
    header = text.splitlines()[0].split(",")
    return tuple(h.strip() for h in header[1:])


def expression_au_table() -> Relatedness:
    """The whole table: ``expression_task()`` -> ``au_task(<every AU in the file>)``."""
    with resources.as_file(resources.files(_PACKAGE).joinpath(TABLE_FILE)) as path:
        return Relatedness.from_csv(path, expression_task(), au_task(_table_aus()))


def expression_au_relatedness(
    aus: Sequence[str | int] | None = None,
    expression: CategoricalTask | None = None,
    au_task: BinarySetTask | None = None,
    allow_unlisted_expressions: bool = False,
) -> Relatedness:
    """Edge ``expression -> AU`` from the built-in table, for any AU set and expression task.

    ``au_task`` (or ``aus``, giving ``au_task(aus)``; default every AU of the
    table) chooses the columns, matched by AU number; an AU absent from the
    table gets weight 0 for every expression. ``expression`` (default
    :func:`expression_task`) chooses the rows by class name; a class the table
    lacks (e.g. ``contempt``) is an error unless ``allow_unlisted_expressions``,
    which gives it an all-zero row (no AU expected).
    """
    if aus is not None and au_task is not None:
        raise ValueError("give aus or au_task, not both")
    full = expression_au_table()
    if au_task is None:
        au_task = _build_au_task(full.target.names if aus is None else aus)
    expression = expression or expression_task()
    unlisted = [c for c in expression.classes if c not in full.source.classes]
    if unlisted and not allow_unlisted_expressions:
        raise SpecError(
            f"expression classes {unlisted} have no row in the built-in table "
            f"(it covers {', '.join(full.source.classes)}); rename them, drop them, or pass "
            "allow_unlisted_expressions=True to give them all-zero rows"
        )
    codes = []
    for label in au_task.labels:
        try:
            codes.append(au_code(label))
        except ValueError as error:
            raise SpecError(f"task {au_task.name!r}: label {label!r}: {error}") from None
    table = torch.zeros(expression.num_classes, au_task.num_labels)
    for j, code in enumerate(codes):
        if f"AU{code}" not in full.target.names:
            continue
        column = full.table[:, full.target.index(f"AU{code}")]
        for i, cls in enumerate(expression.classes):
            if cls in full.source.classes:
                table[i, j] = column[full.source.index(cls)]
    return Relatedness(expression, au_task, table)


__all__ = [
    "AU_NAMES",
    "BP4D_AUS",
    "CONTEMPT",
    "DISFA_AUS",
    "EXPRESSIONS",
    "TABLE_FILE",
    "au_code",
    "au_label",
    "au_name",
    "au_task",
    "expression_au_relatedness",
    "expression_au_table",
    "expression_task",
]
