"""The contract of a stateful pipeline step: state that survives a worker restart.

A gateway pipeline commits, with each batch's offsets, the state of its steps as byte blobs
(the window engine keeps its own store). :class:`Stateful` is a step saved whole
(``state`` / ``restore``: the incident tracker). :class:`PartedState` is a step whose state
is a set of parts saved incrementally: after a batch only ``changed_parts`` are written
(a few devices, not the whole fleet) and ``restore_parts`` rebuilds from every part stored
(the feature extractors and the online detector). ``restore(state())`` on a fresh step of the
same configuration must continue exactly (``tests/test_edge/test_stateful.py`` checks every
implementation). :func:`pack_parts` / :func:`unpack_parts` turn a set of parts into one blob
and back (``state()`` of a :class:`PartedState`); the part named :data:`HEADER` holds the
step's format and config.
"""

from __future__ import annotations

import struct
from typing import Protocol, runtime_checkable

__all__ = ["HEADER", "PartedState", "Stateful", "pack_parts", "unpack_parts"]

HEADER = ""  # the part that holds the format and config


@runtime_checkable
class Stateful(Protocol):
    """A step whose whole state is one blob."""

    def state(self) -> bytes:
        """Everything needed to continue exactly."""
        ...

    def restore(self, blob: bytes) -> None:
        """Replace the state by a blob from :meth:`state` (of a step with this config)."""
        ...


@runtime_checkable
class PartedState(Stateful, Protocol):
    """A step whose state is parts (name -> bytes), stored incrementally."""

    def changed_parts(self) -> dict[str, bytes]:
        """The parts written since the last call."""
        ...

    def restore_parts(self, parts: dict[str, bytes]) -> None:
        """Replace the state by ``parts`` (every part stored, merged)."""
        ...


def pack_parts(parts: dict[str, bytes]) -> bytes:
    """Parts as one blob (``u32`` count, then per part in key order ``u32`` key length, key,
    ``u32`` size, bytes).

    >>> unpack_parts(pack_parts({"": b"{}", "d1": b"xyz"}))
    {'': b'{}', 'd1': b'xyz'}
    """
    out = [struct.pack("<I", len(parts))]
    for key, value in sorted(parts.items()):  # canonical: equal states, equal blobs
        k = key.encode()
        out += [struct.pack("<I", len(k)), k, struct.pack("<I", len(value)), value]
    return b"".join(out)


def unpack_parts(blob: bytes) -> dict[str, bytes]:
    """The inverse of :func:`pack_parts`; ``ValueError`` on anything else."""
    view, pos, out = memoryview(blob), 4, {}
    try:
        (count,) = struct.unpack_from("<I", view, 0)
        for _ in range(count):
            (klen,) = struct.unpack_from("<I", view, pos)
            key = bytes(view[pos + 4 : pos + 4 + klen]).decode()
            (vlen,) = struct.unpack_from("<I", view, pos + 4 + klen)
            pos += 8 + klen + vlen
            if pos > len(blob):
                raise ValueError("a part runs past the end")
            out[key] = bytes(view[pos - vlen : pos])
    except (struct.error, UnicodeDecodeError) as error:
        raise ValueError(f"truncated or garbled parts ({error})") from None
    if pos != len(blob):
        raise ValueError(f"{len(blob) - pos} bytes after the last part")
    return out
