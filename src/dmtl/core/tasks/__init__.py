"""Task kinds: categorical, binary set and regression, each owning what differs by kind.

>>> expr = CategoricalTask("expression", ("neutral", "happy", "sad"))
>>> expr.num_outputs
3
>>> au = BinarySetTask("au", ("AU1", "AU2"))
>>> au.index("AU2")
1
>>> sorted(TASK_KINDS)
['binary_set', 'categorical', 'regression']
"""

from dmtl.core.tasks.base import (
    TASK_KINDS,
    LabelCellError,
    Task,
    check_unique_task_names,
    register_task_kind,
    task_from_dict,
)
from dmtl.core.tasks.binary_set import BinarySetTask
from dmtl.core.tasks.categorical import CategoricalTask
from dmtl.core.tasks.regression import RegressionTask

__all__ = [
    "TASK_KINDS",
    "BinarySetTask",
    "CategoricalTask",
    "LabelCellError",
    "RegressionTask",
    "Task",
    "check_unique_task_names",
    "register_task_kind",
    "task_from_dict",
]
