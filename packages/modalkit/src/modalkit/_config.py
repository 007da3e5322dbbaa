"""ModalConfig: a modalkit.yaml turned into modal 1.x arguments.

Every dictionary this module returns is meant to be splatted into a modal decorator
(``@app.cls(**config.get_app_cls_settings())``), so it only ever holds parameters modal 1.x accepts: the
YAML's deprecated names were already renamed by modalkit-config, and a test checks each key against the
signature of the modal function it is meant for. Modal objects (image, volumes, secrets) are built on first use
and cached, so constructing a ModalConfig touches neither Modal nor the network.
"""

from __future__ import annotations

import logging
import os
import posixpath
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from modalkit._image import ImageStep, build_image, modalkit_install_steps

if TYPE_CHECKING:
    import modal

    from modalkit_config import AppSettings, ModelSettings, Settings

__all__ = ["APP_POSTFIX_ENV", "CONFIG_ENV", "DEFAULT_APP_POSTFIX", "REMOTE_CONFIG_DIR", "ModalConfig"]

logger = logging.getLogger("modalkit")

#: Environment variable whose value is appended to ``app_prefix`` to name the Modal app.
APP_POSTFIX_ENV = "MODALKIT_APP_POSTFIX"
DEFAULT_APP_POSTFIX = "-dev"
#: Environment variable naming the configuration file(s), comma-separated, later ones overriding earlier ones.
CONFIG_ENV = "MODALKIT_CONFIG"
#: Where the configuration files are placed inside the container.
REMOTE_CONFIG_DIR = "/opt/modalkit/config"

_T = TypeVar("_T")


class ModalConfig:
    """The settings of one modalkit app, as modal 1.x arguments.

    Args:
        settings: Settings already loaded; ``None`` loads them with ``modalkit_config.load_settings()``
            (``MODALKIT_CONFIG``, else ``modalkit.yaml`` in the working directory).
        config_files: The files the settings came from, to ship inside the container image (where
            ``MODALKIT_CONFIG`` names them, so the container reads the same configuration). ``None``: the files
            ``load_settings()`` read when it loaded the settings here, else none; ``[]`` ships none.

    ``MODALKIT_`` environment variables that override the files apply where they are set: they are not copied
    into the container (they may hold secrets). Give the container its own through a Modal secret
    (``deployment_config.secrets``) or ``build_config.env``.

    Example::

        config = ModalConfig()
        app = modal.App(config.app_name)

        @app.cls(**config.get_app_cls_settings())
        class MyService(ModalService): ...
    """

    def __init__(self, settings: Settings | None = None, *, config_files: Sequence[str | Path] | None = None) -> None:
        if settings is None:
            from modalkit_config import load_settings

            beside = _beside_caller(sys._getframe(1).f_globals.get("__file__"))
            if beside is not None:
                settings = load_settings(beside)
                config_files = [beside] if config_files is None else config_files
            else:
                settings = load_settings()
                if config_files is None:
                    config_files = _configured_files()
        self.settings: Settings = settings
        self._config_files = [Path(p).resolve() for p in (config_files or [])]
        self._image: Any = None
        self._volumes: dict[str, modal.Volume] | None = None
        self._secrets: list[modal.Secret] | None = None
        # The ModalService subclasses using this config, and those `concurrent()` decorated: a configured
        # concurrency that no decorator applied is refused (modal would silently run one input at a time).
        self._services: list[type[Any]] = []
        self._decorated: list[type[Any]] = []

    # --- plain settings -------------------------------------------------------------------------------------

    @property
    def app_settings(self) -> AppSettings:
        """``app_settings`` of the configuration."""
        return self.settings.app_settings

    @property
    def model_settings(self) -> ModelSettings:
        """``model_settings`` of the configuration."""
        return self.settings.model_settings

    @property
    def app_postfix(self) -> str:
        """``MODALKIT_APP_POSTFIX`` from the environment, ``-dev`` when unset."""
        return os.environ.get(APP_POSTFIX_ENV, DEFAULT_APP_POSTFIX)

    @property
    def app_name(self) -> str:
        """The Modal app name: ``app_prefix`` followed by `app_postfix`."""
        return self.app_settings.app_prefix + self.app_postfix

    @property
    def region(self) -> str | list[str] | None:
        """The region(s) containers may run in, or ``None`` for anywhere."""
        return self.app_settings.deployment_config.region

    @property
    def config_files(self) -> list[Path]:
        """The configuration files shipped inside the image (absolute paths on this machine)."""
        return list(self._config_files)

    # --- modal objects (built on first use) ---------------------------------------------------------------

    @property
    def volumes(self) -> dict[str, modal.Volume]:
        """Mount point -> ``modal.Volume.from_name(name)`` for each configured volume (cached)."""
        if self._volumes is None:
            import modal

            self._volumes = {
                posixpath.normpath(point): modal.Volume.from_name(name)
                for point, name in self.app_settings.deployment_config.volumes.items()
            }
        return self._volumes

    @property
    def cloud_bucket_mounts(self) -> dict[str, modal.CloudBucketMount]:
        """Mount point -> ``modal.CloudBucketMount`` for each configured bucket."""
        import modal

        mounts: dict[str, modal.CloudBucketMount] = {}
        for bucket in self.app_settings.deployment_config.cloud_bucket_mounts:
            mounts[posixpath.normpath(bucket.mount_point)] = modal.CloudBucketMount(
                bucket_name=bucket.bucket_name,
                bucket_endpoint_url=bucket.bucket_endpoint_url,
                key_prefix=bucket.key_prefix,
                secret=modal.Secret.from_name(bucket.secret) if bucket.secret else None,
                oidc_auth_role_arn=bucket.oidc_auth_role_arn,
                read_only=bucket.read_only,
                requester_pays=bucket.requester_pays,
            )
        return mounts

    @property
    def all_volumes(self) -> dict[str, modal.Volume | modal.CloudBucketMount]:
        """Volumes and cloud bucket mounts together, as ``volumes=`` of ``@app.cls`` takes them."""
        combined: dict[str, modal.Volume | modal.CloudBucketMount] = dict(self.volumes)
        combined.update(self.cloud_bucket_mounts)
        return combined

    @property
    def secrets(self) -> list[modal.Secret]:
        """``modal.Secret.from_name(name)`` for each configured secret (cached)."""
        if self._secrets is None:
            import modal

            self._secrets = [modal.Secret.from_name(name) for name in self.app_settings.deployment_config.secrets]
        return list(self._secrets)

    # --- the image --------------------------------------------------------------------------------------------

    def package_extras(self) -> dict[str, list[str]]:
        """Extras of the modalkit packages this configuration needs in the container (e.g. ``sqs``)."""
        extras: dict[str, list[str]] = {}
        backend = self.app_settings.queue_config.backend
        if backend in ("sqs", "taskiq"):
            extras["modalkit-queue"] = [backend]
        auth = self.app_settings.auth_config
        if auth is not None and auth.ssm_key is not None:
            extras["modalkit-auth"] = ["ssm"]
        return extras

    def image_plan(self) -> list[ImageStep]:
        """The container image as a list of ``modal.Image`` calls, in order (see `get_image`)."""
        import modal

        build = self.app_settings.build_config
        python = build.python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
        steps: list[ImageStep] = []
        if build.image:
            self._refuse_plain_image_name(build.image)
            steps.append(ImageStep("from_registry", (image_reference(build.image, build.tag),), {"add_python": python}))
        else:
            steps.append(ImageStep("debian_slim", kwargs={"python_version": python}))
        if build.env:
            steps.append(ImageStep("env", (dict(build.env),)))
        if build.apt_packages:
            steps.append(ImageStep("apt_install", tuple(build.apt_packages)))
        if build.pip_packages:
            steps.append(ImageStep("pip_install", tuple(build.pip_packages)))
        steps.extend(modalkit_install_steps(self.package_extras(), pins=[f"modal=={modal.__version__}"]))
        if build.run_commands:
            steps.append(ImageStep("run_commands", tuple(build.run_commands)))
        steps.append(ImageStep("workdir", (build.workdir,)))
        # Runtime variables last: changing the postfix must not rebuild the layers above.
        runtime_env = {APP_POSTFIX_ENV: self.app_postfix}
        if self._config_files:
            runtime_env[CONFIG_ENV] = ",".join(self._remote_config_paths())
        steps.append(ImageStep("env", (runtime_env,)))
        # Mounted (not copied) files come last: Modal allows no build step after them.
        base = self._config_files[0].parent if self._config_files else Path.cwd()
        for mount in self.app_settings.deployment_config.mounts:
            local = str((base / mount.local_path).resolve())
            method = "add_local_file" if mount.type == "file" else "add_local_dir"
            steps.append(ImageStep(method, (local, mount.remote_path)))
        for local_file, remote in zip(self._config_files, self._remote_config_paths(), strict=True):
            steps.append(ImageStep("add_local_file", (str(local_file), remote)))
        return steps

    def _remote_config_paths(self) -> list[str]:
        # Numbered so two overlays with the same file name in different folders cannot collide.
        return [f"{REMOTE_CONFIG_DIR}/{i}-{path.name}" for i, path in enumerate(self._config_files)]

    def get_image(self) -> modal.Image:
        """The container image (cached): base image, env, apt and pip packages, the modalkit packages at the
        versions installed here, extra run commands, workdir, then the configured mounts and the config files."""
        if self._image is None:
            self._image = build_image(self.image_plan())
        image: modal.Image = self._image
        return image

    # --- decorator arguments ---------------------------------------------------------------------------------

    def get_app_cls_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``@app.cls(...)`` on the inference class (a `ModalService` subclass)."""
        d = self.app_settings.deployment_config
        settings: dict[str, Any] = {
            "image": self.get_image(),
            "gpu": d.gpu,
            "cpu": d.cpu,
            "memory": d.memory,
            "timeout": d.timeout,
            "retries": d.retries,
            "region": d.region,
            "cloud": d.cloud,
            "secrets": self.secrets,
            "volumes": self.all_volumes,
            "min_containers": d.min_containers,
            "max_containers": d.max_containers,
            "buffer_containers": d.buffer_containers,
            "scaledown_window": d.scaledown_window,
            "enable_memory_snapshot": d.enable_memory_snapshot,
            "ephemeral_disk": d.ephemeral_disk,
            "startup_timeout": d.startup_timeout,
            "nonpreemptible": d.nonpreemptible,
            "single_use_containers": d.single_use_containers,
            "block_network": d.block_network,
        }
        return {k: v for k, v in settings.items() if v is not None}

    def get_handler_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``@app.function(...)`` on the web function (the one serving HTTP).

        It needs the image and the secrets (API keys arrive through them) but neither GPU nor volumes: it only
        forwards requests to the inference class. It scales on the ``handler_*`` scaling keys, each defaulting to
        the inference class's key (so ``min_containers: 1`` keeps the HTTP entry point warm too).
        Its input concurrency is a decorator, see `handler_concurrent`.

        Raises:
            ServiceDefinitionError: ``deployment_config.concurrency`` is set and a `ModalService` subclass of this
                config, defined above the web function, was not decorated with `concurrent` (or `cls`).
        """
        self.check_concurrency_applied()
        d = self.app_settings.deployment_config
        settings: dict[str, Any] = {
            "image": self.get_image(),
            "secrets": self.secrets,
            "timeout": d.timeout,
            "region": d.region,
            "cloud": d.cloud,
            "min_containers": _first(d.handler_min_containers, d.min_containers),
            "max_containers": _first(d.handler_max_containers, d.max_containers),
            "buffer_containers": _first(d.handler_buffer_containers, d.buffer_containers),
            "scaledown_window": _first(d.handler_scaledown_window, d.scaledown_window),
        }
        return {k: v for k, v in settings.items() if v is not None}

    def get_asgi_app_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``@modal.asgi_app(...)``: Modal proxy auth when ``deployment_config.secure``."""
        return {"requires_proxy_auth": self.app_settings.deployment_config.secure}

    def get_batched_method_settings(self) -> dict[str, int]:
        """Keyword arguments for ``@modal.batched(...)``: ``max_batch_size`` and ``wait_ms``."""
        batch = self.app_settings.batch_config
        return {"max_batch_size": batch.max_batch_size, "wait_ms": batch.wait_ms}

    def get_handler_concurrency_settings(self) -> dict[str, int]:
        """Keyword arguments for ``@modal.concurrent(...)`` on the web function (``handler_concurrency``)."""
        return {"max_inputs": self.app_settings.deployment_config.handler_concurrency}

    def get_concurrency_settings(self) -> dict[str, int] | None:
        """Keyword arguments for ``@modal.concurrent(...)`` on the inference class, or ``None`` when
        ``deployment_config.concurrency`` is not set (one input at a time, batched)."""
        concurrency = self.app_settings.deployment_config.concurrency
        if concurrency is None:
            return None
        settings = {"max_inputs": concurrency.max_inputs}
        if concurrency.target_inputs is not None:
            settings["target_inputs"] = concurrency.target_inputs
        return settings

    def handler_concurrent(self) -> Callable[[_T], _T]:
        """``@modal.concurrent`` for the web function, from ``handler_concurrency``.

        Stack it between ``@app.function`` and ``@modal.asgi_app``::

            @app.function(**config.get_handler_settings())
            @config.handler_concurrent()
            @modal.asgi_app(**config.get_asgi_app_settings())
            def web_endpoints(): ...
        """
        import modal

        return cast("Callable[[_T], _T]", modal.concurrent(**self.get_handler_concurrency_settings()))

    def concurrent(self) -> Callable[[_T], _T]:
        """``@modal.concurrent`` for the inference class from ``deployment_config.concurrency``; does nothing
        when it is not set. Stack it under ``@app.cls(...)``, or use `cls`, which does both."""
        settings = self.get_concurrency_settings()

        def decorate(obj: _T) -> _T:
            if isinstance(obj, type):
                self._decorated.append(obj)
            if settings is None:
                return obj
            import modal

            return cast("_T", modal.concurrent(**settings)(cast("Any", obj)))

        return decorate

    def cls(self, app: modal.App, **overrides: Any) -> Callable[[type[Any]], Any]:
        """``@app.cls(**get_app_cls_settings())`` and, when ``deployment_config.concurrency`` is set,
        ``@modal.concurrent`` under it: the inference class as ``modalkit.yaml`` describes it, in one decorator.

        Args:
            app: The ``modal.App`` to register the class on.
            overrides: ``@app.cls`` arguments that replace the configured ones (e.g. ``gpu="H100"``).

        Example::

            @config.cls(app)
            class MyService(ModalService): ...
        """

        def decorate(user_cls: type[Any]) -> Any:
            return app.cls(**{**self.get_app_cls_settings(), **overrides})(self.concurrent()(user_cls))

        return decorate

    def get_stream_concurrency_settings(self) -> dict[str, int]:
        """Keyword arguments for ``@modal.concurrent(...)`` on the stream class (a `ModalStreamService`).

        Each stream is an input of its own there, so one container must take a batch's worth at once for streams
        to share batches: ``max_inputs`` is twice ``batch_config.max_batch_size`` (a batch streaming while the
        next one fills, as under ``modalkit serve``), or ``deployment_config.concurrency.max_inputs`` when larger;
        ``target_inputs`` is that of ``deployment_config.concurrency`` when set."""
        settings = {"max_inputs": 2 * self.app_settings.batch_config.max_batch_size}
        configured = self.get_concurrency_settings()
        if configured is not None:
            settings["max_inputs"] = max(settings["max_inputs"], configured["max_inputs"])
            if "target_inputs" in configured:
                settings["target_inputs"] = configured["target_inputs"]
        return settings

    def stream_cls(self, app: modal.App, **overrides: Any) -> Callable[[type[Any]], Any]:
        """``@app.cls(**get_app_cls_settings())`` with ``@modal.concurrent(**get_stream_concurrency_settings())``
        under it: the decorator of the class that streams (a `ModalStreamService`).

        Args:
            app: The ``modal.App`` to register the class on.
            overrides: ``@app.cls`` arguments that replace the configured ones.

        Example::

            @config.stream_cls(app)
            class MyStreams(ModalStreamService): ...
        """

        def decorate(user_cls: type[Any]) -> Any:
            import modal

            self._decorated.append(user_cls)
            concurrent = modal.concurrent(**self.get_stream_concurrency_settings())
            return app.cls(**{**self.get_app_cls_settings(), **overrides})(concurrent(user_cls))

        return decorate

    def check_concurrency_applied(self, service: type[Any] | None = None) -> None:
        """Refuse a configured ``deployment_config.concurrency`` that no decorator gave Modal.

        Args:
            service: The class to check; ``None`` checks every `ModalService` subclass of this config so far.

        Raises:
            ServiceDefinitionError: naming the class and the decorator to add.
        """
        settings = self.get_concurrency_settings()
        if settings is None:
            return
        services = self._services if service is None else [service]
        for user_cls in services:
            if any(user_cls is done for done in self._decorated):
                continue
            from modalkit.errors import ServiceDefinitionError

            given = ", ".join(f"{k}={v}" for k, v in settings.items())
            name = user_cls.__name__
            raise ServiceDefinitionError(
                f"deployment_config.concurrency ({given}) is set but does not reach {name}: Modal 1.x takes it "
                f"only as a class decorator. Put `@config.concurrent()` between `@app.cls(...)` and `class {name}`, "
                "or write `@config.cls(app)` instead of `@app.cls(...)`"
            )

    def _refuse_plain_image_name(self, image: str) -> None:
        """An image without a ``/`` meant Modal's debian_slim in the earlier modalkit, whatever it named; pulling
        it now would change a migrating user's image without a word, so the name must say which one it means.

        Raises:
            ConfigValidationError: at the key's file and line, naming both replacements.
        """
        if "/" in image:
            return
        from modalkit_config import ConfigValidationError

        message = (
            f"{image!r} names no registry; the earlier modalkit built Modal's debian_slim for such a name. Write "
            f"'docker.io/library/{image}' to pull it from Docker Hub, or remove `image` to build on debian_slim"
        )
        raise ConfigValidationError([self.settings.issue_at(("app_settings", "build_config", "image"), message)])

    def _note_service(self, user_cls: type[Any]) -> None:
        """Called by `ModalService` for each subclass whose ``modal_utils`` is this config."""
        self._services.append(user_cls)

    # --- inside the container --------------------------------------------------------------------------------

    def reload_volumes(self) -> None:
        """Reload every configured volume so files committed elsewhere become visible in this container.

        A volume that fails to reload is logged and skipped; the others are still reloaded.
        """
        for mount_point, volume in self.volumes.items():
            try:
                volume.reload()
            except Exception:
                logger.exception("reloading the volume mounted at %s failed", mount_point)


def image_reference(image: str, tag: str) -> str:
    """``image`` with ``:tag`` appended only when it names neither a tag nor a digest.

    ``python:3.11-slim`` and ``img@sha256:...`` are complete references (appending would make them invalid);
    ``registry:5000/img`` has a registry port, not a tag, so it becomes ``registry:5000/img:<tag>``.
    """
    if "@" in image or ":" in image.rsplit("/", 1)[-1]:
        return image
    return f"{image}:{tag}"


def _first(own: int | None, inherited: int | None) -> int | None:
    return inherited if own is None else own


def _beside_caller(app_file: object) -> Path | None:
    """The ``modalkit.yaml`` beside the app file that called ``ModalConfig()``, when the default lookup would
    find none: ``modal deploy examples/svc/app.py`` runs from the repo root, not from the app's folder.

    Raises ConfigFileNotFoundError naming both places when neither holds the file.
    """
    from modalkit_config import ConfigFileNotFoundError, ConfigIssue, config_files

    found = config_files()
    default = (Path.cwd() / "modalkit.yaml").resolve()
    if [p.resolve() for p in found] != [default] or default.is_file() or not isinstance(app_file, str):
        return None  # MODALKIT_CONFIG names the files, or ./modalkit.yaml exists: the usual lookup applies
    beside = Path(app_file).resolve().parent / "modalkit.yaml"
    if beside.is_file():
        return beside
    message = f"not found, nor beside the app file at {beside}; pass a path or set {CONFIG_ENV}"
    raise ConfigFileNotFoundError([ConfigIssue(str(default), "", None, message)])


def _configured_files() -> list[Path]:
    """The files ``load_settings()`` read (``MODALKIT_CONFIG`` from the environment or .env, else ./modalkit.yaml)."""
    from modalkit_config import config_files

    return [path for path in config_files() if path.is_file()]
