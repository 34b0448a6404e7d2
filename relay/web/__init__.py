"""The relay's browser side: the admin center, the device login page, people's sign-in.

:class:`~relay.web.app.WebFront` is built by the composition root (:mod:`relay.node`) and
served on the relay's own port (:mod:`relay.web.frontdoor`); nothing is fetched from the
internet at run time (the pages ship in ``relay/web/static``).

May import :mod:`relay.admin`, :mod:`relay.storage` (its accounts live beside the
relay's store), :mod:`relay.domain` and :mod:`relay.protocol`.
"""
