"""User-facing errors: anything a user can fix by changing their input.

Console scripts print these as one line and exit non-zero; everything else is a bug and keeps its traceback.
"""


class LearngeneError(Exception):
    """Base class of errors caused by bad input (config, paths, model names, data)."""


class ConfigError(LearngeneError):
    """A config file, preset or override is missing, unknown, mistyped or out of range."""


class DataError(LearngeneError):
    """A dataset is unknown, missing on disk or malformed."""


class ModelError(LearngeneError):
    """A model name or model file cannot be used."""


class CheckpointError(LearngeneError):
    """A checkpoint or output directory is missing, incomplete or would be overwritten."""


class TrainingError(LearngeneError):
    """Training cannot go on (for example the loss became NaN)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


#: What torch, timm and transformers raise when a model cannot run on a batch (wrong shape, size, index).
MISMATCH_ERRORS = (RuntimeError, ValueError, IndexError, AssertionError)
