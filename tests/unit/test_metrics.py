"""The relay's request tally: the same Prometheus series the library's own Counter and
Histogram give for the same requests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from relay.domain.metrics import LATENCY_BUCKETS, RelayMetrics


def _series(text: bytes, prefix: str) -> set[str]:
    return {
        line
        for line in text.decode().splitlines()
        if line.startswith(prefix) and "_created" not in line
    }


def test_the_request_tally_renders_what_prometheus_counter_and_histogram_would() -> None:
    ours = RelayMetrics()
    registry = CollectorRegistry()
    counter = Counter(
        "btogether_relay_requests",
        "Requests handled, by type and outcome (ok or an error code)",
        ["type", "outcome"],
        registry=registry,
    )
    histogram = Histogram(
        "btogether_relay_request_seconds",
        "Time from receiving a request to sending its reply",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    seconds = [0.0, 0.00005, *LATENCY_BUCKETS, 0.0003, 0.0031, 0.07, 2.5000001, 9.0]
    kinds = [("lock.set", "ok"), ("lock.ack", "ok"), ("ping", "rate_limited"), ("?", "bad_json")]
    for n, value in enumerate(seconds):
        kind, outcome = kinds[n % len(kinds)]
        ours.requests.record(kind, outcome, value)
        counter.labels(kind, outcome).inc()
        histogram.observe(value)
    theirs = generate_latest(registry)
    for prefix in ("btogether_relay_requests_total", "btogether_relay_request_seconds"):
        assert _series(ours.render(), prefix) == _series(theirs, prefix)
    assert len(_series(theirs, "btogether_relay_request_seconds_bucket")) == 12
    assert 'btogether_relay_requests_total{outcome="ok",type="lock.set"} 5.0' in (
        ours.render().decode()
    )


def test_an_empty_tally_renders_zero_counts() -> None:
    text = RelayMetrics().render().decode()
    assert 'btogether_relay_request_seconds_bucket{le="+Inf"} 0.0' in text
    assert "btogether_relay_request_seconds_count 0.0" in text
    assert "btogether_relay_request_seconds_sum 0.0" in text
