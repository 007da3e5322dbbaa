"""modalkit-auth."""

from importlib.metadata import version as _version

__version__ = _version("modalkit-auth")

__all__ = ["__version__"]
