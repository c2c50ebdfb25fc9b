"""Exact infinite-width limits of deep linear networks (see docs/limits.md)."""

from muptheory.limits.dynamics import LimitTrajectory, input_basis, limit_dynamics
from muptheory.limits.pc import PCEquilibrium, pc_equilibrium, pc_geometry
from muptheory.limits.scaling import LimitScales, limit_scales, maximal_update
from muptheory.limits.tasks import Task, linear_teacher_task

__all__ = [
    "LimitScales",
    "LimitTrajectory",
    "PCEquilibrium",
    "Task",
    "input_basis",
    "limit_dynamics",
    "limit_scales",
    "linear_teacher_task",
    "maximal_update",
    "pc_equilibrium",
    "pc_geometry",
]
