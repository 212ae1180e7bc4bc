"""Error classes for user-facing failures: each carries a one-line message naming the problem and
the fix. The CLIs turn them into a non-zero exit without a traceback (docs/design.md). `plural`
words the counts in such messages ("1 frame", "3 frames"); `first_line` quotes another error
(a package's, a worker's) inside one."""


class LgcvdError(Exception):
    """Base class: bad input or environment that the user can fix."""


class VideoError(LgcvdError):
    """A video file is missing, unreadable, truncated, too short or has an unusable size."""


class BagError(VideoError):
    """A robot log (rosbag2 folder, .mcap or ROS 1 .bag) is unreadable, lacks the asked-for
    topic, or holds images of an encoding lgcvd does not read."""


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


def plural(count: int, noun: str) -> str:
    """`count` and `noun` for a message, the noun in the plural unless count is 1: a noun that
    takes an s ("frame", "clip", "video", "sample", "seed")."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def first_line(err: BaseException, text: str | None = None) -> str:
    """The first non-empty line of `text` (default: str(err)), stripped; err's type name where
    there is none (an empty message)."""
    lines = [line.strip() for line in (str(err) if text is None else text).splitlines()]
    return next((line for line in lines if line), type(err).__name__)
