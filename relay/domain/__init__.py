"""The relay's decisions, and the interfaces they are made through. No sockets.

* records and refusals: :mod:`~relay.domain.model`, :mod:`~relay.domain.errors`;
  request handlers declared next to their code: :mod:`~relay.domain.handlers`;
* the device and laptop protocol: :mod:`~relay.domain.service` (resolve, pair, lock,
  audio, meetings), :mod:`~relay.domain.pairing` (the pair request's state machine),
  :mod:`~relay.domain.consoles` (touch consoles);
* joining a tenant: :mod:`~relay.domain.provisioning`, :mod:`~relay.domain.verification`
  (codes and guess throttling, pure), :mod:`~relay.domain.credentials`,
  :mod:`~relay.domain.device_import` (device lists and MAC addresses);
* who beaconed an EID: :mod:`~relay.domain.directory` (the read cache of the
  directory), :mod:`~relay.domain.resolver` (the EID index),
  :mod:`~relay.domain.eid_indexer` and its child process :mod:`~relay.domain.eid_worker`;
* the interfaces to state and delivery, with their in-process implementations:
  :mod:`~relay.domain.store` (durable state; backends in :mod:`relay.storage`),
  :mod:`~relay.domain.ephemeral` (short-lived state), :mod:`~relay.domain.routing` and
  :mod:`~relay.domain.sessions` (presence, delivery, ending sessions);
* :mod:`~relay.domain.metrics` — the relay's counters.

May import :mod:`relay.protocol` only.
"""
