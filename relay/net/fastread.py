"""Split a client's bytes into whole websocket frames, and read the small text ones without
websockets' parser.

A device or laptop sends small text messages, one frame each. websockets' Sans-I/O
parser handles any frame, at ~6–10 µs each (a generator per frame over a stream
reader); taking a whole, final, masked text frame apart by hand is ~1.5 µs. So
:class:`~relay.net.websocket.OpenWebsocket` cuts what it receives at frame boundaries
(:func:`frame_length`), hands every frame that is not such a text frame — pings, pongs,
closes, fragments, binary frames, anything malformed — whole to the library's protocol,
which therefore always stands at a frame boundary, and reads the others itself
(:func:`text_payload`). Both functions are pure and never raise on what a peer sent.
"""

from __future__ import annotations

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

INCOMPLETE = 0  # frame_length: the frame is not all here yet
TOO_LONG = -1  # frame_length: the frame claims more than the largest message allowed

TEXT_FIN = 0x81  # FIN set, no reserved bit, opcode 1 (text)
MASKED = 0x80


def frame_length(data: bytes | bytearray, offset: int, max_size: int | None) -> int:
    """The length in bytes of the frame starting at ``data[offset]`` if it is all there;
    :data:`INCOMPLETE` if not (yet); :data:`TOO_LONG` if its header claims a payload over
    ``max_size`` (the library's parser refuses it with 1009)."""
    available = len(data) - offset
    if available < 2:
        return INCOMPLETE
    second = data[offset + 1]
    length = second & 0x7F
    header = 2
    if length == 126:
        header = 4
        if available < header:
            return INCOMPLETE
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
    elif length == 127:
        header = 10
        if available < header:
            return INCOMPLETE
        length = int.from_bytes(data[offset + 2 : offset + 10], "big")
    if max_size is not None and length > max_size:
        return TOO_LONG
    if second & MASKED:
        header += 4
    total = header + length
    return total if available >= total else INCOMPLETE


def text_payload(frame: bytes | bytearray) -> bytes | None:
    """The unmasked payload of ``frame`` (one whole frame) if it is a final, masked text
    frame with no reserved bit; None for any other frame."""
    if len(frame) < 6 or frame[0] != TEXT_FIN or not frame[1] & MASKED:
        return None
    length = frame[1] & 0x7F
    start = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    if len(frame) < start + 4:
        return None
    return apply_mask(frame[start + 4 :], frame[start : start + 4])
