"""The relay: the one authority between laptops, devices and administrators.

Its parts, one subpackage each, listed from the top of the imports down (each may
import only the parts listed after it; ``btogether.import_rules`` checks it):

* :mod:`relay.cli` — the command lines: ``btogether relay`` (serve) and
  ``btogether admin``;
* :mod:`relay.net` — the websocket shell: accept, authenticate, the request pipeline
  and the per-connection outbox; it serves a finished node;
* :mod:`relay.node` — the composition root: builds one node's storage, domain,
  administration and web side from its settings (:mod:`relay.config`);
* :mod:`relay.web` — the browser side: the admin center, the device login page,
  people's sign-in;
* :mod:`relay.admin` — what administrators may do, and the record of what they did;
* :mod:`relay.storage` — the backends of the domain's interfaces: SQLite, PostgreSQL
  and Redis;
* :mod:`relay.domain` — the decisions: records, the service, pairing, provisioning,
  EID resolution, routing, and the interfaces its storage implements;
* :mod:`relay.protocol` — the wire protocol, which the beacon and the client speak too.

:mod:`relay.config` (the settings) and :mod:`relay.files` (reading files a person
points the relay at) serve the composition root and the command lines.
"""
