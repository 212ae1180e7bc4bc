"""lgcvd training side (PyTorch): networks, two-stage training, the torch backend, metrics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lgcvd")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
