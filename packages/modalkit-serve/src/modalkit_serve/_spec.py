"""What an app file declares (`ServiceSpec`) and the FastAPI app that serves it on this machine (`build_app`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from modalkit_auth import build_authenticator
from modalkit_config import Settings, config_files, load_settings
from modalkit_pipeline import InferencePipeline, StreamingPipeline
from modalkit_queue import QueueBackend
from modalkit_serve._app import create_app
from modalkit_serve._entries import check_model_entries
from modalkit_serve._runner import LocalRunner
from modalkit_serve.errors import ServiceSpecError

__all__ = ["ServiceSpec", "build_app"]


@dataclass
class ServiceSpec:
    """A service: the pipeline, its settings and its I/O models. An app file defines one as a module attribute.

    Example (``app.py``)::

        from modalkit_serve import ServiceSpec
        from my_model import MyPipeline

        service = ServiceSpec(MyPipeline)   # settings: modalkit.yaml, read when the service starts

    Args:
        pipeline_cls: The `InferencePipeline` subclass.
        settings: The settings, or None to `load_settings()` when the service is built (``MODALKIT_CONFIG``,
            else ``modalkit.yaml``; the CLI points ``MODALKIT_CONFIG`` at the app's folder when it holds one).
        input_model: Defaults to the pipeline's declared input model.
        output_model: Defaults to the pipeline's declared output model.
        queue_backend: Where async results go instead of the backend ``queue_config`` names (a
            `modalkit_queue.QueueBackend`); ``modalkit serve`` sets it from a ModalService's ``queue_backend``.
    """

    pipeline_cls: type[InferencePipeline[Any, Any]]
    settings: Settings | None = None
    input_model: type[BaseModel] | None = None
    output_model: type[BaseModel] | None = None
    source: Path | None = field(default=None, compare=False)
    """The app file this spec was loaded from (set by `load_service`; `run` needs it for ``reload=True``)."""
    config_files: list[Path] = field(default_factory=list, compare=False)
    """The config files the settings were read from (shown in the start-up banner); none for given settings."""
    service_name: str | None = field(default=None, compare=False)
    """The ``--service`` it was chosen by, if any (the reload worker chooses the same one)."""
    finder: str | None = field(default=None, compare=False)
    """``module:function`` of the finder that found it, when not modalkit-serve's own (for the reload worker)."""
    queue_backend: QueueBackend | None = field(default=None, compare=False)
    """The backend async results go to instead of the one ``queue_config`` names (None: that one)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.pipeline_cls, type) and issubclass(self.pipeline_cls, InferencePipeline)):
            raise ServiceSpecError(f"ServiceSpec needs an InferencePipeline subclass, got {self.pipeline_cls!r}")
        if self.input_model is None or self.output_model is None:
            declared_in, declared_out = self.pipeline_cls.io_models()
            self.input_model = self.input_model or declared_in
            self.output_model = self.output_model or declared_out

    def resolve_settings(self) -> Settings:
        """The settings given, else the ones `load_settings()` finds now, checked against the pipeline.

        Raises:
            ConfigError: the settings are invalid, or a model entry does not fit the arguments the pipeline
                declares (`InferencePipeline.entry_problems`).
        """
        if self.settings is None:
            self.settings = load_settings()
            self.config_files = [p.resolve() for p in config_files()]
        check_model_entries(self.pipeline_cls, self.settings)
        return self.settings


def build_app(spec: ServiceSpec, *, freeze_gc: bool = False) -> FastAPI:
    """The FastAPI app for a spec, served by a `LocalRunner`, with auth when the settings configure it.

    Args:
        spec: The service.
        freeze_gc: See `LocalRunner` (``run`` sets it: the process is a server).
    """
    settings = spec.resolve_settings()
    assert spec.input_model is not None
    assert spec.output_model is not None
    runner = LocalRunner(spec.pipeline_cls, settings, queue_backend=spec.queue_backend, freeze_gc=freeze_gc)
    authenticator = build_authenticator(settings.app_settings)
    chunk_model = spec.pipeline_cls.chunk_model() if issubclass(spec.pipeline_cls, StreamingPipeline) else None
    return create_app(runner, spec.input_model, spec.output_model, settings, authenticator, chunk_model=chunk_model)
