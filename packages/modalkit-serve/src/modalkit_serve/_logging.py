"""JSON-lines logging through python-json-logger, with formatting and I/O off the request path.

`configure_logging` (called by the CLI or `run`, never at import) puts one handler on the root logger. The
handler only hands records to a queue; a background thread formats them as JSON and writes them in batches.
The access log (one record per request) takes an even shorter path: the request only enqueues a tuple of its
fields, and the background thread builds the log record from it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import sys
import threading
import time
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["ACCESS_LOGGER", "AccessLog", "configure_logging", "shutdown_logging"]

ACCESS_LOGGER = "modalkit.access"

_ACCESS_FIELDS = (
    "request_id",
    "method",
    "path",
    "route",
    "model",
    "status",
    "latency_ms",
    "batch_size",
    "queue_wait_ms",
)
_MAX_DRAIN = 512  # records formatted per write

AccessFields = tuple[str, str, str, str, str | None, int, float, int | None, float | None]
"""request_id, method, path, route, model, status, latency_ms, batch_size, queue_wait_ms."""


class _Pump:
    """The background thread that formats records and writes them, many per write."""

    _STOP = object()

    def __init__(self, stream: IO[str], formatter: logging.Formatter) -> None:
        self.stream = stream
        self.formatter = formatter
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.access_logger = logging.getLogger(ACCESS_LOGGER)
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
                    record = self._access_record(item) if isinstance(item, tuple) else item
                    lines.append(self.formatter.format(record))
                except Exception:  # a record that cannot be formatted must not stop the log
                    lines.append('{"level": "ERROR", "logger": "modalkit.log", "message": "unformattable log record"}')
            if lines:
                # The stream may be gone (a closed pipe at exit); there is nowhere left to report that.
                with contextlib.suppress(Exception):
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
            if stop:
                return

    def _access_record(self, item: tuple[float, AccessFields]) -> logging.LogRecord:
        created, fields = item
        method, path, status, latency_ms, queue_wait_ms = fields[1], fields[2], fields[5], fields[6], fields[8]
        record = self.access_logger.makeRecord(
            ACCESS_LOGGER, logging.INFO, "", 0, "%s %s %d %.1fms", (method, path, status, latency_ms), None
        )
        record.created = created
        record.msecs = (created - int(created)) * 1000
        values = dict(zip(_ACCESS_FIELDS, fields, strict=True))
        values["latency_ms"] = round(latency_ms, 3)
        if queue_wait_ms is not None:
            values["queue_wait_ms"] = round(queue_wait_ms, 3)
        record.__dict__.update(values)
        return record


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


def configure_logging(level: str | int = "INFO", stream: IO[str] | None = None) -> None:
    """Send every log record, as one JSON object per line, to ``stream`` (stderr by default).

    Replaces the handler a previous call installed; other handlers on the root logger are left alone.
    Formatting and writing happen on a background thread; `shutdown_logging` (also run at exit) flushes it.

    Args:
        level: The root level, a name such as ``"INFO"`` or a number.
        stream: Where the lines go.

    Raises:
        ValueError: ``level`` is not a known level name.
    """
    global _pump, _handler
    numeric = _level_number(level)
    formatter = JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )
    with _lock:
        shutdown_logging()
        _pump = _Pump(stream or sys.stderr, formatter)
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


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


class AccessLog:
    """One record per request on the ``modalkit.access`` logger, at INFO level.

    With `configure_logging` in effect, a request only enqueues its fields; otherwise the record goes through
    the logger as usual (so pytest's caplog and any user logging setup see it).
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger(ACCESS_LOGGER)

    def log(self, fields: AccessFields) -> None:
        """Log one request (cheap when the access logger is off or the background pump is on)."""
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        pump = _pump
        if pump is not None and not logger.handlers and not logger.filters:
            pump.queue.put((time.time(), fields))
            return
        request_id, method, path, route, model, status, latency_ms, batch_size, queue_wait_ms = fields
        logger.info(
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
