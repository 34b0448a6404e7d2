"""The laptop's tray icon (``btogether client tray``).

* :mod:`~client.tray.menu` — the menu and the notifications, built from the client's
  :class:`~client.views.TrayState` (pure: no toolkit);
* :mod:`~client.tray.icon` — draws it with pystray, notifies, asks for the meeting;
* :mod:`~client.tray.app` — runs the client daemon with the tray, or attaches to a
  client already running, and turns menu actions into the client's commands.
"""
