"""Error classes for user-facing failures: each carries a one-line message naming the problem and
the fix. The CLIs turn them into a non-zero exit without a traceback (style.md 14)."""


class LgcvdError(Exception):
    """Base class: bad input or environment that the user can fix."""


class VideoError(LgcvdError):
    """A video file is missing, unreadable, truncated, too short or has an unusable size."""


class BundleError(LgcvdError):
    """A model bundle is missing, corrupt, tampered with or of an unknown format version."""


class BackendError(LgcvdError):
    """An inference backend is unavailable (package not installed, no GPU)."""


class DataError(LgcvdError):
    """A training data source is empty, unreadable or of the wrong shape."""


class OutputError(LgcvdError):
    """An output cannot be written where it was asked for (folder missing or not writable)."""


class OutputExistsError(OutputError):
    """An output path exists and --force was not given."""


class NonFiniteError(LgcvdError):
    """A graph returned NaN or Inf: a broken bundle, engine or precision, never a frame."""
