"""``from modalkit.modal_service import ModalService, create_web_endpoints``: the earlier modalkit's import path."""

from modalkit._service import ModalService
from modalkit._web import create_web_endpoints
from modalkit.task_queue import send_response_queue
from modalkit_config import Settings

__all__ = ["ModalService", "Settings", "create_web_endpoints", "send_response_queue"]
