"""The relay's Prometheus metrics, in a registry of its own (no process-wide singletons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        self.requests = Counter(
            "btogether_relay_requests",
            "Requests handled, by type and outcome (ok or an error code)",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "btogether_relay_request_seconds",
            "Time from receiving a request to sending its reply",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
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
