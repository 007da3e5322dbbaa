"""modalkit-config."""

from importlib.metadata import version as _version

__version__ = _version("modalkit-config")

__all__ = ["__version__"]
