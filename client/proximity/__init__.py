"""Which rooms and phones are near the laptop, from the adverts it hears.

* :mod:`~client.proximity.tracker` — RSSI smoothing, distance and ranking with
  hysteresis (pure, clock-free: samples and the time in, a ranking out);
* :mod:`~client.proximity.nearby` — the sightings to report to the relay, what it
  resolved them to, and the ranked list with names (pure);
* :mod:`~client.proximity.scanning` — the events of ``btogether client scan``: a beacon
  new, changed or lost (pure);
* :mod:`~client.proximity.scenario`, :mod:`~client.proximity.advert_model`,
  :mod:`~client.proximity.scoring` and :mod:`~client.proximity.sim_cli` — simulated
  floors, what a laptop walking across one hears, and how well a tracker names the room
  (``btogether sim``).
"""
