"""Fixtures shared by every test package: servers started once per test session.

``postgres_server`` is a private PostgreSQL (Debian's binaries, a temporary directory,
a free loopback port) for the contract suites and the relay's PostgreSQL tests; it is
started only when a test asks for it. Tests that stop it (outage tests) start it again
before they end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from btogether.local_postgres import LocalPostgres, PostgresNotInstalled


def pytest_configure(config: pytest.Config) -> None:
    """Tracebacks in the logs of the relays the tests run in-process as plain text.

    structlog's default renders them with rich and every local variable's value, which
    takes seconds on a busy machine while it holds the event loop: a relay whose database
    was stopped then answered nothing for longer than a test waits.
    """
    processors = list(structlog.get_config()["processors"])
    processors[-1] = structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback
    )
    structlog.configure(processors=processors)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    # fsync off: the tests never pull the plug, and a commit then costs no disk flush.
    server = LocalPostgres(tmp_path_factory.mktemp("postgres"), fsync=False)
    try:
        server.start()
    except PostgresNotInstalled as exc:
        pytest.skip(f"{exc} (./dev.sh test installs it)")
    try:
        yield server
    finally:
        server.cleanup()
