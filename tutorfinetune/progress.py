"""Progress bars that suit where the code runs.

A widget bar when a Jupyter front end is attached, a plain text bar in a terminal or under papermill
(whose saved widget bars come back frozen), or none. Choose with ``set_progress("widget" | "text" |
"off" | "auto")`` or the environment variable ``TUTORFINETUNE_PROGRESS`` (the README's commands and
the notebook tests set it to ``text``).
"""

from __future__ import annotations

import os
import sys

__all__ = ["progress_bar", "set_progress", "progress_mode", "outer_bar"]

_MODE: str | None = None
_NESTED = 0  # > 0 while an outer bar (a sweep) is running: inner bars stay quiet in text mode
_VALID = ("auto", "widget", "text", "off")


def set_progress(mode: str) -> None:
    """Choose how progress is shown: ``"auto"``, ``"widget"``, ``"text"`` or ``"off"``."""
    global _MODE
    if mode not in _VALID:
        raise ValueError(f"Unknown progress mode {mode!r}; use one of {_VALID}.")
    _MODE = mode


def progress_mode() -> str:
    mode = _MODE or os.environ.get("TUTORFINETUNE_PROGRESS", "auto")
    if mode not in _VALID:
        mode = "auto"
    if mode == "auto":
        ip = sys.modules.get("IPython")
        shell = ip.get_ipython() if ip is not None and hasattr(ip, "get_ipython") else None
        mode = "widget" if shell is not None and type(shell).__name__ == "ZMQInteractiveShell" else "text"
    return mode


class outer_bar:
    """Context manager: while it is open, inner bars are silent in text mode (one bar per sweep)."""

    def __enter__(self):
        global _NESTED
        _NESTED += 1
        return self

    def __exit__(self, *exc):
        global _NESTED
        _NESTED -= 1
        return False


def progress_bar(total: int, desc: str = "", initial: int = 0):
    """A tqdm bar in the chosen mode (``off`` gives a disabled bar with the same interface)."""
    mode = progress_mode()
    if mode == "text" and _NESTED:
        mode = "off"
    if mode == "widget":
        try:
            from tqdm.notebook import tqdm as widget_tqdm

            return widget_tqdm(total=total, initial=initial, desc=desc)
        except ImportError:  # no ipywidgets: fall back to text
            pass
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=(mode == "off"), mininterval=10.0,
                file=sys.stderr, dynamic_ncols=False, ncols=100)
