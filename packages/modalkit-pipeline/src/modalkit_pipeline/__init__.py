"""modalkit-pipeline."""

from importlib.metadata import version as _version

__version__ = _version("modalkit-pipeline")

__all__ = ["__version__"]
