"""modalkit-serve."""

from importlib.metadata import version as _version

__version__ = _version("modalkit-serve")

__all__ = ["__version__"]
