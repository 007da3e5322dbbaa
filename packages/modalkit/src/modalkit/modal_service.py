"""``from modalkit.modal_service import ModalService, create_web_endpoints``: the earlier modalkit's import path."""

from modalkit._service import ModalService
from modalkit._web import create_web_endpoints

__all__ = ["ModalService", "create_web_endpoints"]
