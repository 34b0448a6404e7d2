"""Administration: what administrators may do, and the record of what they did.

* :mod:`~relay.admin.service` — :class:`~relay.admin.service.AdminService`: one admin
  request for an authenticated administrator (role check, tenant isolation, audit);
* :mod:`~relay.admin.edits` — renaming and deleting what administrators made;
* :mod:`~relay.admin.outcome` — what an admin request produces, shared with the
  handlers plugged into the service (:mod:`relay.web` adds some);
* :mod:`~relay.admin.store_admin` — :class:`~relay.admin.store_admin.Admin`, the
  Python API over the store that tests, benchmarks, the demo and bootstrap use.

May import :mod:`relay.domain` and :mod:`relay.protocol` only.
"""
