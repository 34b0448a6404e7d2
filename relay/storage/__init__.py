"""The backends of the domain's interfaces: where the relay's state lives.

* SQLite, the embedded default: :mod:`~relay.storage.sqlite_store` (the durable
  :class:`~relay.domain.store.RelayStore`), :mod:`~relay.storage.sqlite_writer` (its
  group commit) and :mod:`~relay.storage.sqlite_ephemeral` (short-lived state that
  survives a restart);
* PostgreSQL, for several nodes: :mod:`~relay.storage.postgres_store` and
  :mod:`~relay.storage.postgres_ephemeral`;
* Redis, shared by a cluster: :mod:`~relay.storage.redis_state` (short-lived state,
  presence and delivery between nodes);
* :mod:`~relay.storage.store_rows` — database rows to records and back, for every SQL
  store.

The interfaces they implement (:mod:`relay.domain.store`, :mod:`relay.domain.ephemeral`,
:mod:`relay.domain.routing`) and their in-process defaults live in the domain. May
import :mod:`relay.domain` and :mod:`relay.protocol` only.
"""
