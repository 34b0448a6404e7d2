"""Reaching the relay: which TLS certificates to trust, and why a connection failed, in one line.

Every program that opens a websocket to the relay (the beacon daemon and its provisioning
commands, the laptop client, the admin command line) uses :func:`client_tls` to trust an
internal certificate authority besides the system's ones (a ``ca_file`` setting or
``--ca-file``), and :func:`why_unreachable` to turn the exception of a failed connection
into a sentence a person can act on: websockets and ssl often say nothing useful (a
``wss://`` URL pointing at a plain ``ws://`` port fails with an empty ConnectionResetError).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from websockets.exceptions import InvalidMessage, InvalidStatus, InvalidURI

from relay.protocol import wire


class TlsSetupError(ValueError):
    """The CA file cannot be used; the message says which file and why."""


def client_tls(url: str, ca_file: Path | str | None) -> ssl.SSLContext | None:
    """The TLS context for ``url``: None (websockets' default) unless a CA file is given.

    The CA file's certificates are trusted in addition to the system's. A ``ws://`` URL
    needs no context, whatever the CA file says.
    """
    if ca_file is None or urlsplit(url).scheme != "wss":
        return None
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except FileNotFoundError:
        raise TlsSetupError(f"the CA file {ca_file} does not exist") from None
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise TlsSetupError(f"the CA file {ca_file} cannot be used: {reason}") from None
    return context


def _where(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    return f"{parts.hostname}:{port}"


def why_unreachable(url: str, exc: BaseException) -> str:
    """One line saying why connecting to the relay at ``url`` failed."""
    tls = urlsplit(url).scheme == "wss"
    where = _where(url)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the relay's TLS certificate is not trusted ({exc.verify_message}); if an "
            "internal CA signed it, give that CA's certificate file (--ca-file, or ca_file "
            "in the settings)"
        )
    if tls and isinstance(exc, (ssl.SSLError, ConnectionResetError, EOFError, InvalidMessage)):
        return (
            f"the TLS handshake with {where} failed ({_detail(exc)}): is that port serving "
            "plain ws://? Use a ws:// URL there, or the port of the TLS terminator in front "
            "of the relay"
        )
    if isinstance(exc, InvalidMessage):
        return (
            f"{where} did not answer like a relay ({_detail(exc)}): if it serves TLS, "
            "use a wss:// URL"
        )
    if isinstance(exc, InvalidStatus):
        return f"the relay refused the connection: {refusal(exc)}"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing accepts connections at {where} (connection refused)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {urlsplit(url).hostname!r}: {exc.strerror}"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} in time"
    if isinstance(exc, InvalidURI):
        return f"{url!r} is not a relay URL (expected ws://host:port/ or wss://host/)"
    return f"{_detail(exc)}"


def refusal(exc: InvalidStatus) -> str:
    """``HTTP 401: unknown or revoked credential``: the status and the relay's own reason
    (the response body), else what the protocol reference says that status means."""
    code = exc.response.status_code
    body = (exc.response.body or b"").decode("utf-8", "replace").strip()
    why = body.splitlines()[0][:200] if body else ""
    if not why:
        why = wire.HANDSHAKE_REFUSALS.get(code, exc.response.reason_phrase).replace("``", "")
    return f"HTTP {code}: {why}"


def _detail(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return text if text else type(exc).__name__
