"""Signing a laptop in without copying a token: the OAuth 2.0 device authorisation grant
(RFC 8628) against the relay's web side.

:func:`sign_in` asks the relay for a device code (``POST /oauth/device_authorization``),
hands the short user code and the page's address to ``show`` (the command prints them),
then polls ``POST /oauth/token`` at the interval the relay asks for (slower after
``slow_down``) until the person approves or denies on the page, or the code expires.
The relay's address is the one the client uses for its websocket (``ws://`` → ``http://``,
``wss://`` → ``https://``): the pages are served on the same port.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
MAX_WAIT_S = 15 * 60.0


class DeviceCodeFailed(Exception):
    """The sign-in did not complete; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Prompt:
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: float


@dataclass(frozen=True, slots=True)
class Granted:
    token: str
    user_name: str | None
    tenant_id: str | None


def web_base(relay_url: str) -> str:
    """The relay's web address for its websocket URL."""
    parts = urlsplit(relay_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None:
        raise DeviceCodeFailed(f"the relay URL must start with ws:// or wss://: {relay_url}")
    return urlunsplit((scheme, parts.netloc, "", "", ""))


async def _post(
    http: aiohttp.ClientSession, url: str, form: dict[str, str], tls: ssl.SSLContext | None
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, data=form, ssl=tls if tls is not None else True) as response:
        try:
            body = await response.json(content_type=None)
        except (ValueError, aiohttp.ContentTypeError):
            body = None
        if not isinstance(body, dict):
            raise DeviceCodeFailed(
                f"the relay at {url} does not offer device sign-in (HTTP {response.status})"
            )
        return response.status, body


async def sign_in(
    relay_url: str,
    client_name: str,
    show: Callable[[Prompt], None],
    *,
    tls: ssl.SSLContext | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    timeout_s: float = 15.0,
) -> Granted:
    base = web_base(relay_url)
    client_timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=client_timeout) as http:
            status, started = await _post(
                http, f"{base}/oauth/device_authorization", {"client_name": client_name}, tls
            )
            if status != 200:
                raise DeviceCodeFailed(
                    f"the relay refused to start: {started.get('error_description', status)}"
                )
            show(
                Prompt(
                    started["user_code"],
                    started["verification_uri"],
                    started.get("verification_uri_complete", started["verification_uri"]),
                    float(started.get("expires_in", 600)),
                )
            )
            interval = float(started.get("interval", 5))
            waited = 0.0
            while waited < min(MAX_WAIT_S, float(started.get("expires_in", 600)) + interval):
                await sleep(interval)
                waited += interval
                status, answer = await _post(
                    http,
                    f"{base}/oauth/token",
                    {"grant_type": GRANT_TYPE, "device_code": started["device_code"]},
                    tls,
                )
                if status == 200 and isinstance(answer.get("access_token"), str):
                    return Granted(
                        answer["access_token"], answer.get("user_name"), answer.get("tenant_id")
                    )
                error = answer.get("error")
                if error == "authorization_pending":
                    continue
                if error == "slow_down":
                    interval += 5.0
                    continue
                if error == "access_denied":
                    raise DeviceCodeFailed("the sign-in was denied on the page")
                if error == "expired_token":
                    raise DeviceCodeFailed("the code expired before it was approved; try again")
                raise DeviceCodeFailed(
                    f"the relay refused: {answer.get('error_description') or error or status}"
                )
            raise DeviceCodeFailed("the code expired before it was approved; try again")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DeviceCodeFailed(f"cannot reach the relay at {base}: {exc}") from None
    except KeyError as exc:
        raise DeviceCodeFailed(f"the relay's answer lacks {exc}") from None
