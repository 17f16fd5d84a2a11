"""The event-line parser (pure; no console)."""

import json
import zlib

import pytest

from jumpstarter_driver_sysinstall.events import EventParser, crc_hex, frame

EVENT = {"schema": 1, "seq": 3, "time": 1.5, "phase": "unpack", "bytes_done": 10, "kind": "progress"}


def framed(event=EVENT):
    payload = json.dumps(event, separators=(",", ":"))
    return f"@@sysinstall {zlib.crc32(payload.encode()):08x} {payload}"


def test_crc_is_zlib_crc32_as_8_lowercase_hex_digits():
    assert crc_hex(b"") == "00000000"
    assert crc_hex(b"123456789") == "cbf43926"   # the CRC-32/IEEE check value
    assert frame(EVENT) == framed()


def test_a_framed_line_gives_its_event():
    p = EventParser()
    assert p.parse_line(framed()) == EVENT
    assert (p.accepted, p.dropped, p.framed_seen) == (1, 0, True)


def test_crlf_line_ends_are_accepted():
    p = EventParser()
    assert p.parse_line(framed() + "\r\n") == EVENT
    assert p.parse_line((framed() + "\r").encode()) == EVENT


def test_the_marker_may_follow_kernel_text():
    p = EventParser()
    assert p.parse_line("[   12.345678] mmc0: new high speed SDHC card " + framed()) == EVENT


def test_a_line_broken_by_kernel_output_is_dropped_and_counted():
    line = framed()
    broken = line[:40] + "[   12.3] usb 1-1: new device" + line[40:]
    p = EventParser()
    assert p.parse_line(broken) is None
    assert p.dropped == 1 and p.accepted == 0


def test_a_wrong_or_malformed_crc_is_dropped():
    line = framed()
    crc = line.split()[1]
    bad = line.replace(crc, f"{(int(crc, 16) ^ 1):08x}")
    upper = line.replace(crc, crc.upper()) if crc.upper() != crc else line.replace(crc, "ZZZZZZZZ")
    p = EventParser()
    assert p.parse_line(bad) is None
    assert p.parse_line(upper) is None
    assert p.parse_line("@@sysinstall 1234 {}") is None
    assert p.dropped == 3


def test_a_valid_crc_over_something_that_is_not_an_event_is_dropped():
    for payload in ("[1,2]", '{"no_kind":1}', "not json"):
        line = f"@@sysinstall {crc_hex(payload.encode())} {payload}"
        assert EventParser().parse_line(line) is None


def test_the_second_marker_of_a_line_is_tried_when_the_first_is_broken():
    line = framed()
    p = EventParser()
    assert p.parse_line(line[:30] + " " + line) == EVENT


def test_console_mode_ignores_unframed_json():
    p = EventParser(mode="console")
    assert p.parse_line(json.dumps(EVENT)) is None
    assert p.dropped == 0


def test_json_mode_accepts_whole_json_lines_only():
    p = EventParser(mode="json")
    assert p.parse_line(json.dumps(EVENT) + "\r\n") == EVENT
    assert p.parse_line("[  1.0] x " + json.dumps(EVENT)) is None
    assert p.parse_line('{"kind": 1}') is None
    assert p.parse_line('{"event": "summary"}') == {"event": "summary"}
    assert p.parse_line("PASS: successful installation") is None
    assert p.parse_line(framed()) is None   # json mode asked for plain lines


def test_auto_mode_accepts_unframed_lines_until_the_first_framed_one():
    p = EventParser(mode="auto")
    assert p.parse_line(json.dumps(EVENT)) == EVENT
    assert p.parse_line(framed()) == EVENT
    assert p.parse_line(json.dumps(EVENT)) is None


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        EventParser(mode="xml")


def test_feed_reassembles_lines_split_across_chunks():
    text = ("noise\r\n" + framed() + "\r\n" + "[ 1.0] k " + framed({"kind": "summary", "exit": 0}) + "\r\n").encode()
    p = EventParser()
    got = []
    for i in range(0, len(text), 5):
        got += list(p.feed(text[i:i + 5]))
    assert got == [EVENT, {"kind": "summary", "exit": 0}]


def test_bytes_that_are_not_utf8_do_not_break_the_parser():
    p = EventParser(mode="auto")
    assert p.parse_line(b"\xff\xfe garbage @@sysinstall \xff") is None
    assert p.parse_line(b"{\xff}") is None
    assert p.parse_line(b"\xc3( " + framed().encode()) == EVENT
