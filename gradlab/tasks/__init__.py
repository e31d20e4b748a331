"""Synthetic tasks (sequences for RNNs/LSTMs, vectors for MLPs) and the file task (the user's own data).
`get(name, **options)` builds one."""

from __future__ import annotations

from gradlab.nn import _checks
from gradlab.tasks.adding import Adding
from gradlab.tasks.base import EVAL_SIZE, Task
from gradlab.tasks.copy_memory import CopyMemory
from gradlab.tasks.file import DataError, FileTask
from gradlab.tasks.temporal_order import TemporalOrder
from gradlab.tasks.vectors import AbsValue, GaussianBlobs, TeacherStudent, TwoSpirals

TASKS = {
    "adding": Adding,
    "temporal_order": TemporalOrder,
    "copy_memory": CopyMemory,
    "teacher_student": TeacherStudent,
    "gaussian_blobs": GaussianBlobs,
    "two_spirals": TwoSpirals,
    "abs_value": AbsValue,
    "file": FileTask,
}
NAMES = tuple(TASKS)
SYNTHETIC = tuple(name for name in NAMES if name != "file")  # the tasks that draw their own examples


def get(name: str, **options) -> Task:
    """The task called `name` (one of NAMES) with its options (e.g. T, variant, input_size, seed; file: path, loss)."""
    return TASKS[_checks.choice("task", name, NAMES)](**options)


__all__ = ["EVAL_SIZE", "NAMES", "SYNTHETIC", "TASKS", "AbsValue", "Adding", "CopyMemory", "DataError", "FileTask", "GaussianBlobs",
           "Task", "TeacherStudent", "TemporalOrder", "TwoSpirals", "get"]  # fmt: skip
