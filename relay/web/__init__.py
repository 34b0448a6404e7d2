"""The relay's browser side: the admin center, the device login page, people's sign-in.

:func:`attach` gives a relay that serves administration (its store keeps the admin
tables) a :class:`~relay.web.app.WebFront`, served on the relay's own port; nothing is
fetched from the internet at run time (the pages ship in ``relay/web/static``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay.server import RelayServer
    from relay.web.app import WebFront


def attach(server: RelayServer) -> WebFront | None:
    """The web side of this relay, or None if it serves no administration."""
    if server.admin_endpoints is None:
        return None
    from relay.web.app import WebFront

    return WebFront(server, server.admin_endpoints)
