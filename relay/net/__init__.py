"""The relay's websocket shell: sockets in, a finished node behind.

* :mod:`~relay.net.server` — accept, handshake, authenticate, hand each connection to
  its endpoint; health and metrics on the same port;
* :mod:`~relay.net.admin_endpoint` — the ``/admin`` and ``/provision`` endpoints;
* :mod:`~relay.net.connection` — one connection's session and request loop;
* :mod:`~relay.net.websocket` — a device's or laptop's socket after the handshake,
  served on websockets' Sans-I/O protocol (no task per idle connection);
* :mod:`~relay.net.pipeline` — the one request pipeline of every endpoint;
* :mod:`~relay.net.outbox` and :mod:`~relay.net.fastsend` — a connection's bounded
  outbox and its writes; :mod:`~relay.net.fastread` — a client's frames, cut and read;
* :mod:`~relay.net.ratelimit` — per-connection flood control (pure).

May import :mod:`relay.node` (the node it serves), :mod:`relay.config`,
:mod:`relay.domain` and :mod:`relay.protocol`; it reaches storage, administration and
the web side only through the node.
"""
