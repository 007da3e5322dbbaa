"""modalkit-queue."""

from importlib.metadata import version as _version

__version__ = _version("modalkit-queue")

__all__ = ["__version__"]
