"""Logging: JSON lines (python-json-logger) for production, readable lines on a terminal; formatting and I/O
off the request path.

`configure_logging` (called by the CLI or `run`, never at import) puts one handler on the root logger. The
handler only hands records to a queue; a background thread formats them and writes them in batches. The
access log (one record per request) takes an even shorter path: the request only enqueues a tuple of its
fields, and the background thread builds the line from it. Requests to ``/health`` and ``/ready`` (probes
poll them) are logged at DEBUG, the others at INFO.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

__all__ = ["ACCESS_LOGGER", "LOG_FORMATS", "AccessLog", "configure_logging", "resolve_log_format", "shutdown_logging"]

ACCESS_LOGGER = "modalkit.access"
LOG_FORMATS = ("auto", "json", "console")
"""``auto``: console when the stream is a terminal, else JSON."""
_PROBE_ROUTES = frozenset({"/health", "/ready"})

_MAX_DRAIN = 512  # records formatted per write
_LINGER_SECONDS = 0.005

AccessFields = tuple[str, str, str, str, str | None, int, float, int | None, float | None]
"""request_id, method, path, route, model, status, latency_ms, batch_size, queue_wait_ms."""


class _Pump:
    """The background thread that formats records and writes them, many per write."""

    _STOP = object()

    def __init__(self, stream: IO[str], formatter: logging.Formatter, access_line: Callable[..., str]) -> None:
        self.stream = stream
        self.formatter = formatter
        self.access_line = access_line
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="modalkit-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self.queue.put(self._STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        get = self.queue.get
        get_nowait = self.queue.get_nowait
        while True:
            items = [get()]
            if items[0] is not self._STOP:
                # Let a few records gather: one wake-up and one write for many requests instead of one each
                # (this thread competes with the event loop for the GIL; a few ms of log delay costs nothing).
                time.sleep(_LINGER_SECONDS)
            try:
                while len(items) < _MAX_DRAIN:
                    items.append(get_nowait())
            except queue.Empty:
                pass
            stop = False
            lines: list[str] = []
            for item in items:
                if item is self._STOP:
                    stop = True
                    continue
                try:
                    lines.append(self.access_line(*item) if isinstance(item, tuple) else self.formatter.format(item))
                except Exception:  # a record that cannot be formatted must not stop the log
                    lines.append('{"level": "ERROR", "logger": "modalkit.log", "message": "unformattable log record"}')
            if lines:
                # The stream may be gone (a closed pipe at exit); there is nowhere left to report that.
                with contextlib.suppress(Exception):
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
            if stop:
                return


def _iso_time(created: float, _cache: dict[int, str] = {}) -> str:  # noqa: B006 - a deliberate per-second cache
    second = int(created)
    prefix = _cache.get(second)
    if prefix is None:
        _cache.clear()
        prefix = _cache[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{prefix}.{min(999, round((created - second) * 1000)):03d}Z"


class _JsonFormatter(JsonFormatter):
    """python-json-logger's formatter with ISO-8601 UTC times (``2026-01-31T12:00:00.123Z``)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - overrides
        return _iso_time(record.created)


_dumps = json.dumps
# Text that is already valid inside a JSON string as it is: printable ASCII without `"` or `\`.
_PLAIN = re.compile(r"[ !#-\[\]-~]*").fullmatch
_encoded: dict[object, str] = {}  # method, route and model names: few distinct values, encoded once


def _json_str(text: str) -> str:
    return f'"{text}"' if _PLAIN(text) else _dumps(text)


def _cached(value: object) -> str:
    encoded = _encoded.get(value)
    if encoded is None:
        if len(_encoded) > 1000:  # bounded: a flood of odd methods cannot grow it without limit
            _encoded.clear()
        encoded = _encoded[value] = _dumps(value)
    return encoded


def _access_line(created: float, fields: AccessFields, level: str = "INFO") -> str:
    """One access record as the JSON line `_JsonFormatter` would write for it, built directly.

    The access log is the one record written per request; building its line from the tuple costs a few
    microseconds instead of a LogRecord plus the generic formatter, and this thread shares the GIL with the
    event loop. The keys and their order are the formatter's: time, level, logger, message, then the fields.
    """
    request_id, method, path, route, model, status, latency_ms, batch_size, queue_wait_ms = fields
    wait = "null" if queue_wait_ms is None else repr(round(queue_wait_ms, 3))
    return (
        f'{{"time": "{_iso_time(created)}", "level": "{level}", "logger": "{ACCESS_LOGGER}", '
        f'"message": {_json_str(f"{method} {path} {status} {latency_ms:.1f}ms")}, '
        f'"request_id": {_json_str(request_id)}, "method": {_cached(method)}, "path": {_json_str(path)}, '
        f'"route": {_cached(route)}, "model": {_cached(model)}, "status": {status}, '
        f'"latency_ms": {round(latency_ms, 3)!r}, "batch_size": {"null" if batch_size is None else batch_size}, '
        f'"queue_wait_ms": {wait}}}'
    )


_SKIPPED = frozenset({*RESERVED_ATTRS, "color_message", "message", "asctime"})


def _console_time(created: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(created)) + f".{min(999, int(created % 1 * 1000)):03d}"


def _console_value(value: object) -> str:
    text = value if isinstance(value, str) else ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if text and " " not in text and '"' not in text else _dumps(text)


class _ConsoleFormatter(logging.Formatter):
    """``12:00:00.123 INFO    modalkit.serve  message  key=value ...``: for a person at a terminal.

    The record's extra fields follow the message, except those whose value the message already shows.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        fields = [
            f"{key}={_console_value(value)}"
            for key, value in vars(record).items()
            if key not in _SKIPPED and value is not None and not _shown_in(value, message)
        ]
        line = f"{_console_time(record.created)} {record.levelname:<7} {record.name}  {message}"
        if fields:
            line += "  " + " ".join(fields)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _shown_in(value: object, message: str) -> bool:
    if isinstance(value, list):
        return bool(value) and all(str(v) in message for v in value)
    return isinstance(value, str) and bool(value) and value in message


def _console_access_line(created: float, fields: AccessFields, level: str = "INFO") -> str:
    request_id, method, path, _route, model, status, latency_ms, batch_size, queue_wait_ms = fields
    line = f"{_console_time(created)} {level:<7} {ACCESS_LOGGER}  {method} {path} {status} {latency_ms:.1f}ms"
    if model is not None:
        line += f"  model={model}"
    if batch_size is not None:
        line += f" batch_size={batch_size}"
    if queue_wait_ms is not None:
        line += f" queue_wait_ms={queue_wait_ms:.1f}"
    return f"{line} request_id={request_id}"


class _PumpHandler(logging.Handler):
    """Hands records to the pump; the record's message is resolved now, while its arguments are current."""

    def __init__(self, pump: _Pump, level: int) -> None:
        super().__init__(level)
        self.pump = pump

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg = record.getMessage()
            record.args = None
            self.pump.queue.put(record)
        except Exception:
            self.handleError(record)


_pump: _Pump | None = None
_handler: _PumpHandler | None = None
_lock = threading.Lock()


def configure_logging(level: str | int = "INFO", stream: IO[str] | None = None, log_format: str = "auto") -> None:
    """Send every log record, one per line, to ``stream`` (stderr by default).

    Replaces the handler a previous call installed; other handlers on the root logger are left alone.
    Formatting and writing happen on a background thread; `shutdown_logging` (also run at exit) flushes it.

    Args:
        level: The root level, a name such as ``"INFO"`` or a number.
        stream: Where the lines go.
        log_format: ``json`` (one JSON object per line), ``console`` (readable lines), or ``auto``: console
            when ``stream`` is a terminal, else JSON.

    Raises:
        ValueError: ``level`` is not a known level name, or ``log_format`` not a known format.
    """
    global _pump, _handler
    numeric = _level_number(level)
    target = stream or sys.stderr
    formatter: logging.Formatter
    if resolve_log_format(log_format, target) == "console":
        formatter, access_line = _ConsoleFormatter(), _console_access_line
    else:
        formatter = _JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's copy of the message with ANSI colours
        )
        access_line = _access_line
    with _lock:
        shutdown_logging()
        _pump = _Pump(target, formatter, access_line)
        _handler = _PumpHandler(_pump, logging.NOTSET)
        root = logging.getLogger()
        root.addHandler(_handler)
        root.setLevel(numeric)
    atexit.register(shutdown_logging)


def shutdown_logging() -> None:
    """Flush and remove what `configure_logging` installed (safe to call when nothing was)."""
    global _pump, _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
    if _pump is not None:
        _pump.stop()
        _pump = None


def resolve_log_format(log_format: str, stream: IO[str] | None = None) -> str:
    """``json`` or ``console``: what ``log_format`` (one of `LOG_FORMATS`) means for ``stream`` (stderr)."""
    name = log_format.lower()
    if name not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; use {', '.join(LOG_FORMATS)}")
    if name != "auto":
        return name
    isatty = getattr(stream or sys.stderr, "isatty", None)
    try:
        return "console" if isatty is not None and isatty() else "json"
    except ValueError:  # a closed stream
        return "json"


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


class AccessLog:
    """One record per request on the ``modalkit.access`` logger: INFO, DEBUG for ``/health`` and ``/ready``.

    With `configure_logging` in effect, a request only enqueues its fields; otherwise the record goes through
    the logger as usual (so pytest's caplog and any user logging setup see it).
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger(ACCESS_LOGGER)

    def log(self, fields: AccessFields) -> None:
        """Log one request (cheap when the access logger is off or the background pump is on)."""
        logger = self.logger
        level = logging.DEBUG if fields[3] in _PROBE_ROUTES else logging.INFO
        if not logger.isEnabledFor(level):
            return
        pump = _pump
        if pump is not None and not logger.handlers and not logger.filters:
            pump.queue.put((time.time(), fields, "INFO" if level == logging.INFO else "DEBUG"))
            return
        request_id, method, path, route, model, status, latency_ms, batch_size, queue_wait_ms = fields
        logger.log(
            level,
            "%s %s %d %.1fms",
            method,
            path,
            status,
            latency_ms,
            extra={
                "request_id": request_id,
                "method": method,
                "path": path,
                "route": route,
                "model": model,
                "status": status,
                "latency_ms": round(latency_ms, 3),
                "batch_size": batch_size,
                "queue_wait_ms": None if queue_wait_ms is None else round(queue_wait_ms, 3),
            },
        )
