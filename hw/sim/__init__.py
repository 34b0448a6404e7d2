"""The simulated air: BlueZ stand-ins for several hosts that share one radio space.

Start it with ``btogether air`` (:mod:`hw.sim.cli`) or from Python with
:func:`hw.sim.launch.start_air`.  Unmodified bleak and our BlueZ advertiser run against
it by pointing ``DBUS_SYSTEM_BUS_ADDRESS`` at a host's bus.
"""
