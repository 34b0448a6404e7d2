"""The wire protocol, which the relay, the beacon, the client and the admin tools speak.

The device and laptop protocol (:mod:`~relay.protocol.wire`), the administrators'
(:mod:`~relay.protocol.admin_wire`), the pairing and hand-off state tables
(:mod:`~relay.protocol.states`), the BLE frame and EID maths (:mod:`~relay.protocol.frame`,
:mod:`~relay.protocol.eid`), and the client ends of a link to the relay
(:mod:`~relay.protocol.link`, :mod:`~relay.protocol.admin_link`, ...).

Stands on its own: it imports nothing else of ours.
"""
