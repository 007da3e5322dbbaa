"""modalkit."""

from importlib.metadata import version as _version

__version__ = _version("modalkit")

__all__ = ["__version__"]
