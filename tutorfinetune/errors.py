"""Errors of a training run, shared by every layer that trains (the engine, the recipes, the Trainer
bridge); configuration, data and method errors live beside what they check."""

__all__ = ["TrainingError", "NonFiniteLossError"]


class TrainingError(RuntimeError):
    """Training could not go on; the message says what to change."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite."""
