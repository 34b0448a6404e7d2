"""The relay's command lines: the top of the relay, which nothing else of it imports.

* :mod:`~relay.cli.serve` — ``btogether relay serve``: settings, the node, the server,
  signals;
* :mod:`~relay.cli.admin` — ``btogether admin``: the administrator's command tree;
  :mod:`~relay.cli.admin_commands` runs a command (reach the relay, look names up with
  :mod:`~relay.cli.admin_names`, send, print).

May import every other part of the relay.
"""
