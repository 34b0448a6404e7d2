"""The laptop side: what the laptop hears, what its user asks, and what the relay says.

The daemon (``btogether client run``, or ``client tray``):

* :mod:`client.core` — the laptop's state and decisions, pure: relay events, adverts,
  lock changes, commands and the time in, effects out;
* :mod:`client.daemon` — the asyncio shell that feeds the core through one inbox and
  carries out its effects (the relay link, the scanner, the lock watcher);
* :mod:`client.operations` and :mod:`client.views` — what can be asked of the running
  client, and its typed answers; :mod:`client.api` — both ends of its control socket;
* :mod:`client.lock_report` — when a lock change still has to reach the relay (pure);
* :mod:`client.config` — the state directory, the settings and the stored login.

The subsystems around it, one subpackage each:

* :mod:`client.proximity` — which rooms and phones are near: RSSI smoothing and
  ranking, sighting reports, and the simulated floors the ranking is scored on;
* :mod:`client.tray` — the tray icon and its menu;
* :mod:`client.cli` — the ``btogether client …`` commands.
"""
