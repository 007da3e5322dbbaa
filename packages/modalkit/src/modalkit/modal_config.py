"""``from modalkit.modal_config import ModalConfig``: the earlier modalkit's import path, kept working."""

from modalkit._config import ModalConfig
from modalkit_config import Settings

__all__ = ["ModalConfig", "Settings"]
