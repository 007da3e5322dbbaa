"""Prometheus metrics on a per-app registry, updated at the cost of a dict lookup and an add.

prometheus-client's own Counter/Histogram take a lock and resolve labels on every update; on a hot path doing
tens of thousands of updates a second that is a measurable share of the request. Here each metric keeps plain
Python numbers, updated on the event-loop thread only (request and batch metrics) or under a lock (delivery
events, which arrive on the queue sender's thread), and turns them into metric families only when scraped.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "ServeMetrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)


class _Counter:
    def __init__(self, name: str, doc: str, labels: Sequence[str], lock: threading.Lock | None = None) -> None:
        self.name = name
        self.doc = doc
        self.labels = list(labels)
        self.values: dict[tuple[str, ...], float] = {}
        self._lock = lock

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        if self._lock is None:
            values = self.values
            values[key] = values.get(key, 0.0) + amount
            return
        with self._lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def collect(self) -> Metric:
        # prometheus_client appends _total itself.
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in list(self.values.items()):
            family.add_metric(list(key), value)
        return family


class _Histogram:
    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name = name
        self.doc = doc
        self.labels = list(labels)
        self.bounds = tuple(float(b) for b in buckets)
        # Per label set: a count per bucket (the last for +Inf), then the sum.
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], value: float) -> None:
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, value)] += 1
        series[-1] += value

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, series in list(self.series.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(self.bounds, series, strict=False):
                cumulative += count
                buckets.append((_float_label(bound), cumulative))
            cumulative += series[len(self.bounds)]
            buckets.append(("+Inf", cumulative))
            family.add_metric(list(key), buckets, series[-1])
        return family


def _float_label(value: float) -> str:
    return str(int(value)) + ".0" if value == int(value) else repr(value)


class _Collector:
    """Adapts our metrics (and gauges read at scrape time) to prometheus-client's collector interface."""

    def __init__(self, metrics: Iterable[_Counter | _Histogram], gauges: Callable[[], Iterable[Metric]]) -> None:
        self._metrics = list(metrics)
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield metric.collect()
        yield from self._gauges()


MAX_QUEUE_LABELS = 32
"""How many queue names outside ``queue_config.allowed_queues`` get a metric label of their own."""
OTHER_QUEUE = "other"


class QueueLabels:
    """Bounded ``queue`` label values: configured queues by name, the first `MAX_QUEUE_LABELS` others by name,
    every later one as ``other`` (queue names come from callers, and each label value is a series forever).

    Called from the queue sender's thread.
    """

    def __init__(self, limit: int = MAX_QUEUE_LABELS) -> None:
        self.limit = limit
        self._configured: frozenset[str] = frozenset()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def configure(self, queues: Iterable[str], *, only: bool) -> None:
        """Name the configured queues; with ``only`` (an allow-list is on), no other name gets a label."""
        with self._lock:
            self._configured = frozenset(queues)
            if only:
                self.limit = 0

    def __call__(self, queue: str) -> str:
        if queue in self._configured or queue in self._seen:
            return queue
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(queue)
                return queue
        return OTHER_QUEUE


class ServeMetrics:
    """Every metric the service exports, on its own `CollectorRegistry` (so tests can build many apps).

    Request and batch metrics must be updated from the event-loop thread; `on_delivery_event` may be called
    from any thread.
    """

    def __init__(self, *, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = _Counter("modalkit_requests", "HTTP requests served, by route and status.", ["route", "status"])
        self.latency = _Histogram(
            "modalkit_request_duration_seconds",
            "Time from request start to response end, by route and status.",
            ["route", "status"],
            LATENCY_BUCKETS,
        )
        self.batch_size = _Histogram(
            "modalkit_batch_size", "Items per batch run, by model.", ["model"], BATCH_SIZE_BUCKETS
        )
        self.batch_wait = _Histogram(
            "modalkit_batch_wait_seconds",
            "How long the oldest item of a batch waited in the queue before the batch started, by model.",
            ["model"],
            LATENCY_BUCKETS,
        )
        self.batch_duration = _Histogram(
            "modalkit_batch_duration_seconds", "Time one batch took to run, by model.", ["model"], LATENCY_BUCKETS
        )
        self.async_jobs = _Counter("modalkit_async_jobs", "Async jobs accepted, by model.", ["model"])
        self._delivery_lock = threading.Lock()
        self.deliveries = _Counter(
            "modalkit_async_deliveries",
            "Async results delivered to their queue, by queue.",
            ["queue"],
            self._delivery_lock,
        )
        self.retries = _Counter(
            "modalkit_delivery_retries",
            "Failed delivery attempts that will be retried.",
            ["queue"],
            self._delivery_lock,
        )
        self.dead_letters = _Counter(
            "modalkit_dead_letters",
            "Async results that exhausted their retries and went to a dead letter (or failed even that), by outcome.",
            ["queue", "outcome"],
            self._delivery_lock,
        )
        self.queue_labels = QueueLabels()
        self.stream_chunks = _Counter("modalkit_stream_chunks", "Chunks the models streamed, by model.", ["model"])
        self.streams = _Counter(
            "modalkit_streams",
            "Streams that ended, by model and outcome (done, error, cancelled, timeout, slow_reader).",
            ["model", "outcome"],
        )
        self.queue_depth_source: Callable[[], Mapping[str, int]] | None = None
        self.streams_source: Callable[[], Mapping[str, int]] | None = None
        self.ready_source: Callable[[], bool] | None = None
        self.registry.register(
            _Collector(
                [
                    self.requests,
                    self.latency,
                    self.batch_size,
                    self.batch_wait,
                    self.batch_duration,
                    self.async_jobs,
                    self.deliveries,
                    self.retries,
                    self.dead_letters,
                    self.stream_chunks,
                    self.streams,
                ],
                self._gauges,
            )
        )
        if process_metrics:
            ProcessCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """One finished request (event-loop thread)."""
        key = (route, _status_label(status))
        self.requests.inc(key)
        self.latency.observe(key, seconds)

    def observe_batch(self, model: str, size: int, wait_seconds: float, run_seconds: float) -> None:
        """One finished batch (event-loop thread); matches `modalkit_serve._batcher.BatchObserver`."""
        key = (model,)
        self.batch_size.observe(key, size)
        self.batch_wait.observe(key, wait_seconds)
        self.batch_duration.observe(key, run_seconds)

    def observe_stream(self, model: str, chunks: int, outcome: str | None) -> None:
        """Streams advancing and ending (event-loop thread); matches `modalkit_serve._batcher.StreamObserver`."""
        if chunks:
            self.stream_chunks.inc((model,), chunks)
        if outcome is not None:
            self.streams.inc((model, outcome))

    def on_delivery_event(self, event: Any) -> None:
        """The queue sender's ``on_event`` callback (any thread): counts deliveries, retries and dead letters."""
        kind = getattr(event, "kind", None)
        queue = self.queue_labels(str(getattr(event, "queue_name", "")))
        if kind == "delivered":
            self.deliveries.inc((queue,))
        elif kind == "retry":
            self.retries.inc((queue,))
        elif kind in ("dead_lettered", "dead_letter_failed"):
            self.dead_letters.inc((queue, str(kind)))

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)

    def _gauges(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("modalkit_queue_depth", "Items waiting for a batch, by model.", labels=["model"])
        if self.queue_depth_source is not None:
            for model, value in self.queue_depth_source().items():
                depth.add_metric([model], value)
        yield depth
        open_streams = GaugeMetricFamily(
            "modalkit_streams_open", "Streams waiting or streaming (their slots), by model.", labels=["model"]
        )
        if self.streams_source is not None:
            for model, value in self.streams_source().items():
                open_streams.add_metric([model], value)
        yield open_streams
        if self.ready_source is not None:
            yield GaugeMetricFamily(
                "modalkit_ready", "1 when the service is ready to serve.", value=self.ready_source()
            )


_STATUS_LABELS = {code: str(code) for code in range(100, 600)}


def _status_label(status: int) -> str:
    return _STATUS_LABELS.get(status) or str(status)
