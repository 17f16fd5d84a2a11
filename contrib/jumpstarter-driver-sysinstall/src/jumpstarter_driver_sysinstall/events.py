"""Reading sysinstall's event stream off a serial console.

With ``--events console`` every event is one console line::

    @@sysinstall <crc> <json>

where ``<json>`` is the object ``--events json`` prints and ``<crc>`` is the
CRC-32 (IEEE, as ``zlib.crc32``) of exactly the ``<json>`` bytes, as 8
lowercase hex digits. Kernel messages share the console: one may be printed
before the marker on the same line (accepted), or in the middle of an event
(the CRC no longer matches and the line is dropped, counted in ``dropped``).

Until every upgrader speaks the framed form, ``--events json`` (plain JSON
Lines) is understood too. Which lines count is the parser's ``mode``:

``console``
    framed lines only; a plain JSON line is ignored (it could be any program's
    output, and a broken one cannot be told from a whole one).
``json``
    plain lines only: a line that is a JSON object with a ``kind`` (or
    ``event``) field, from its first to its last character.
``auto``
    both, until the first framed line: from then on plain lines are ignored
    (a console that frames its events has no reason to print unframed ones).

The driver's client always knows which ``--events`` it asked for and uses the
matching strict mode; ``auto`` is for reading a console log of unknown origin.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

MARKER = b"@@sysinstall "
MODES = ("console", "json", "auto")


def crc_hex(payload: bytes) -> str:
    """The frame's checksum of ``payload``: CRC-32 (IEEE) as 8 lowercase hex digits."""
    return f"{zlib.crc32(payload) & 0xFFFFFFFF:08x}"


def frame(event: dict[str, Any]) -> str:
    """One framed console line (without the line end) for ``event``; the inverse of the parser."""
    payload = json.dumps(event, separators=(",", ":"))
    return f"@@sysinstall {crc_hex(payload.encode())} {payload}"


def _as_event(payload: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(value, dict):
        return None
    if not isinstance(value.get("kind", value.get("event")), str):
        return None
    return value


def _hex8(b: bytes) -> bool:
    return len(b) == 8 and all(c in b"0123456789abcdef" for c in b)


@dataclass
class EventParser:
    """Turns console lines into events, dropping what kernel output broke up.

    Feed it lines (``parse_line``) or raw chunks (``feed``, which splits on LF
    and strips CR, keeping an unfinished line for the next chunk).
    """

    mode: str = "console"
    framed_seen: bool = False
    accepted: int = 0
    dropped: int = 0
    """framed lines whose CRC or JSON was wrong (broken up by other output)"""
    _partial: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"event mode {self.mode!r}: expected one of {', '.join(MODES)}")

    def parse_line(self, line: bytes | str) -> dict[str, Any] | None:
        """The event a line carries, or None (not an event, or a broken one)."""
        raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else bytes(line)
        raw = raw.rstrip(b"\r\n")
        if self.mode != "json" and MARKER in raw:
            event = self._framed(raw)
            if event is not None:
                self.framed_seen = True
                self.accepted += 1
                return event
            self.dropped += 1
            return None
        if self.mode == "json" or (self.mode == "auto" and not self.framed_seen):
            text = raw.strip()
            if text.startswith(b"{") and text.endswith(b"}"):
                event = _as_event(text)
                if event is not None:
                    self.accepted += 1
                    return event
        return None

    def _framed(self, raw: bytes) -> dict[str, Any] | None:
        # The marker may follow other text (a kernel message printed first);
        # try every occurrence, the frame runs to the end of the line.
        start = raw.find(MARKER)
        while start >= 0:
            rest = raw[start + len(MARKER):]
            crc, sep, payload = rest[:8], rest[8:9], rest[9:]
            if _hex8(crc) and sep == b" " and crc_hex(payload) == crc.decode():
                event = _as_event(payload)
                if event is not None:
                    return event
            start = raw.find(MARKER, start + 1)
        return None

    def feed(self, chunk: bytes) -> Iterator[dict[str, Any]]:
        """Events completed by ``chunk`` (bytes as they come off the console)."""
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            event = self.parse_line(line)
            if event is not None:
                yield event

    def parse_lines(self, lines: Iterable[bytes | str]) -> list[dict[str, Any]]:
        """Every event of a finished text (e.g. a saved console log)."""
        events = []
        for line in lines:
            event = self.parse_line(line)
            if event is not None:
                events.append(event)
        return events
