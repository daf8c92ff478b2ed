"""Deprecated alias of :mod:`tutorfinetune.studies.runs` (moved in 0.2; this path goes in 0.3)."""

from ._compat import alias

alias(__name__, "tutorfinetune.studies.runs")
