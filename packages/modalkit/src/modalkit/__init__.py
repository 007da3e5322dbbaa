"""modalkit."""

from importlib.metadata import version as _version

from modalkit._config import ModalConfig

__version__ = _version("modalkit")

__all__ = ["ModalConfig", "__version__"]
