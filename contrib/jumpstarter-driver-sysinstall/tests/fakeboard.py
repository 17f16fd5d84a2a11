"""A fake upgrader console for the unit tests (no board, no kernel, no qemu).

It imitates what the conversation relies on: the shell echoes what is typed
(CRLF line ends), answers Enter with the prompt, runs the one-line command
wrapper of conversation.py, and a scripted `sysinstall install` prints event
lines, optionally with kernel messages in between or inside them. The real
upgrader is exercised by the qemu tier (tests/qemu/jumpstarter.sh).
"""

from __future__ import annotations

import json
import re
import shlex

from jumpstarter_driver_sysinstall.events import frame

PROMPT = b"sysinstall# "
WRAP = re.compile(r"^printf 'SIBEG_%s\\n' (\w+); \{ (.*); \} </dev/null; printf 'SIRC_%s:%d\\n' \1 \$\?$")


def events_ok(device="/dev/mmcblk0"):
    return [
        {"schema": 1, "seq": 1, "time": 0.1, "kind": "plan", "mode": "initial", "device": device},
        {"schema": 1, "seq": 2, "time": 0.2, "phase": "unpack", "step": "unpack APP, APP_b",
         "kind": "step_start"},
        {"schema": 1, "seq": 3, "time": 1.0, "phase": "unpack", "step": "unpack APP, APP_b",
         "bytes_done": 50, "bytes_total": 100, "rate": 1e6, "kind": "progress"},
        {"schema": 1, "seq": 4, "time": 2.0, "phase": "unpack", "step": "unpack APP, APP_b",
         "verdict": "ok", "kind": "step_end"},
        {"schema": 1, "seq": 5, "time": 2.1, "kind": "summary", "result": "pass", "exit": 0,
         "mode": "initial", "device": device},
    ]


def events_fail(code="source_unavailable", retryable=True, exit=4):
    return [
        {"schema": 1, "seq": 1, "time": 0.1, "kind": "failure", "code": code, "retryable": retryable,
         "error": "reading http://x/rootfs.tar: connection refused"},
        {"schema": 1, "seq": 2, "time": 0.2, "kind": "summary", "result": "fail", "exit": exit,
         "code": code, "retryable": retryable, "error": "reading http://x/rootfs.tar: connection refused"},
    ]


class FakeBoard:
    """The upgrader shell as a Transport; ``now`` is its clock (fake time)."""

    def __init__(self, *, boot_reads=3, runs=None, framed=True, noise=None, mangle_summary=False,
                 summary_file=None):
        self.now = 0.0
        self.boot_reads = boot_reads
        self.out = bytearray()
        self.typed = b""
        self.files: dict[str, str] = {}
        self.commands: list[str] = []
        self.lines: list[str] = []   # as typed
        self.clock_set: int | None = None
        self.runs = list(runs or [(events_ok(), 0)])   # one (events, rc) per sysinstall run
        self.framed = framed
        self.noise = noise   # kernel text printed before/inside event lines
        self.mangle_summary = mangle_summary
        if summary_file is not None:
            self.files["/run/sysinstall/summary"] = summary_file
        self.chunk = 7   # small reads: lines arrive in pieces

    def clock(self) -> float:
        return self.now

    # --- Transport -----------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.boot_reads > 0:
            return   # still booting: typed characters go nowhere useful
        self.typed += data
        while b"\n" in self.typed:
            line, self.typed = self.typed.split(b"\n", 1)
            self.out += line + b"\r\n"   # echo
            self._line(line.decode())

    def read(self, timeout: float) -> bytes:
        if self.boot_reads > 0:
            self.boot_reads -= 1
            self.now += 1.0
            if self.boot_reads == 0:
                self.out += b"[    1.0] Run /init as init process\r\n\r\n  sysinstall upgrader (...)\r\n" + PROMPT
            return b"[    0.5] booting\r\n"
        if not self.out:
            self.now += timeout
            return b""
        data = bytes(self.out[: self.chunk])
        del self.out[: self.chunk]
        self.now += 0.01
        return data

    # --- the shell -----------------------------------------------------------
    def _line(self, line: str) -> None:
        self.lines.append(line)
        if not line.strip():
            self.out += PROMPT
            return
        m = WRAP.match(line)
        if not m:
            self.out += b"sh: unexpected input\r\n" + PROMPT
            return
        nonce, command = m.group(1), m.group(2)
        output, rc = self._command(command)
        self.out += f"SIBEG_{nonce}\r\n".encode() + output + f"SIRC_{nonce}:{rc}\r\n".encode() + PROMPT

    def _command(self, command: str) -> tuple[bytes, int]:
        self.commands.append(command)
        words = shlex.split(command)
        if words[:1] == ["sh"]:
            return self._command(self.files[words[1]].strip())
        if words == ["true"]:
            return b"", 0
        if words == ["date", "+%s"]:
            return f"{self.clock_set}\r\n".encode(), 0
        if words[:2] == ["date", "-s"]:
            self.clock_set = int(words[2].lstrip("@"))
            return b"", 0
        if words[:2] == ["mkdir", "-p"]:
            path = re.search(r": >(\S+)\)", command).group(1)
            self.files[path] = ""
            return b"", 0
        if words[:1] == ["printf"] and words[1] in ("%s", "%s\\n"):
            self.files[words[3].lstrip(">")] += words[2] + ("\n" if words[1] == "%s\\n" else "")
            return b"", 0
        if words[:1] == ["cat"]:
            if words[1] in self.files:
                return self.files[words[1]].encode(), 0
            return b"", 1
        if words[:1] == ["rm"]:
            self.files.pop(words[2], None)
            return b"", 0
        if words[:2] == ["sysinstall", "install"]:
            return self._install(words)
        return b"sh: " + words[0].encode() + b": not found\r\n", 127

    def _install(self, words: list[str]) -> tuple[bytes, int]:
        events, rc = self.runs.pop(0)
        out = b""
        for i, event in enumerate(events):
            line = frame(event) if self.framed else json.dumps(event)
            if self.mangle_summary and event["kind"] == "summary":
                line = line[:30] + "[   9.9] mmc0: timeout\r\n" + line[30:]
            elif self.noise and i % 2 == 1:
                line = self.noise + line   # a kernel message printed first
            out += line.encode() + b"\r\n"
        out += b"PASS: successful installation\r\n" if rc == 0 else b"FAIL: something\r\n"
        return out, rc
