"""The relay's Prometheus metrics, in a registry of its own (no process-wide singletons)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.connections = Gauge(
            "btogether_relay_connections",
            "Open authenticated websocket connections",
            ["role"],
            registry=self.registry,
        )
        self.requests = RequestTally(LATENCY_BUCKETS)
        self.registry.register(self.requests)
        self.refused_handshakes = Counter(
            "btogether_relay_refused_handshakes",
            "Websocket handshakes refused, by HTTP status",
            ["status"],
            registry=self.registry,
        )

        self.failed_deliveries = Counter(
            "btogether_relay_failed_deliveries",
            "Events that could not be handed to their recipient's connection, by reason "
            "(offline, refused: its outbox was closing or full, unreachable: Redis was down)",
            ["reason"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestTally(Collector):
    """Requests counted by type and outcome and timed into latency buckets, kept as plain
    numbers and turned into Prometheus samples when scraped (the same series a
    ``Counter`` and a ``Histogram`` would give: ``btogether_relay_requests_total``,
    ``btogether_relay_request_seconds_bucket``/``_count``/``_sum``). Per request that is
    two increments and a bisection, where the library's metrics take a lock for every
    increment: about 5 % of the relay's CPU per lock round trip, in py-spy's profile. The
    relay records from its event loop only, so nothing here needs a lock."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self._bounds = tuple(buckets)
        self._counts: dict[tuple[str, str], int] = {}
        self._buckets = [0] * (len(self._bounds) + 1)  # the last one: above every bound
        self._sum = 0.0

    def record(self, kind: str, outcome: str, seconds: float) -> None:
        key = (kind, outcome)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        # A bucket's bound is inclusive (Prometheus' "le"): bisect_left finds it.
        self._buckets[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "btogether_relay_requests",
            "Requests handled, by type and outcome (ok or an error code)",
            labels=["type", "outcome"],
        )
        for (kind, outcome), count in sorted(self._counts.items()):
            requests.add_metric([kind, outcome], count)
        yield requests
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(self._bounds, self._buckets, strict=False):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        buckets.append(("+Inf", cumulative + self._buckets[-1]))
        yield HistogramMetricFamily(
            "btogether_relay_request_seconds",
            "Time from receiving a request to sending its reply",
            buckets=buckets,
            sum_value=self._sum,
        )
