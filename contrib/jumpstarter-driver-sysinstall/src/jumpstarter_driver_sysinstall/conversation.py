"""The conversation with the upgrader's shell over a serial console.

Independent of Jumpstarter: it talks to a ``Transport`` (write bytes, read
what arrived within a timeout), so the unit tests drive it with a fake
console and the client with the serial child's stream.

Every command is sent as one line::

    printf 'SIBEG_%s\\n' NONCE; { COMMAND; } </dev/null; printf 'SIRC_%s:%d\\n' NONCE $?

The console echoes what is typed, but the echo holds ``SIBEG_%s`` and never
``SIBEG_NONCE``, so the output of COMMAND is exactly what lies between the
two printed markers, and ``$?`` is its exit status, whatever the prompt or
kernel messages around it. Busybox's line editor takes lines of at most
1024 bytes (its default CONFIG_FEATURE_EDITING_MAX_LEN): a longer command is
first written to a file in pieces and run from there.
"""

from __future__ import annotations

import logging
import re
import secrets
import shlex
import time
from typing import Callable, Protocol

from .events import EventParser
from .report import ConsoleError, InstallResult, ProgressLog, outcome

PROMPT = "sysinstall# "
SUMMARY_FILE = "/run/sysinstall/summary"
STAGE_DIR = "/run/sysinstall/lab"
CACERT_PATH = f"{STAGE_DIR}/ca.pem"
BEARER_PATH = f"{STAGE_DIR}/bearer"
LINE_MAX = 900
"""longest command typed as one line (busybox's editor keeps 1024 bytes)"""


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def read(self, timeout: float) -> bytes:
        """What arrived within ``timeout`` seconds (b"" if nothing); EOFError when the line is gone."""
        ...


class Console:
    """Commands on the upgrader shell, with their output and exit status."""

    def __init__(self, transport: Transport, *, prompt: str = PROMPT, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic, debug: Callable[[bytes], None] | None = None):
        self.transport = transport
        self.prompt = prompt.encode()
        self.logger = logger or logging.getLogger(__name__)
        self.clock = clock
        self.debug = debug

    def _read(self, timeout: float) -> bytes:
        data = self.transport.read(max(timeout, 0.0))
        if data and self.debug:
            self.debug(data)
        return data

    def wait_prompt(self, timeout: float, poke: float = 3.0) -> None:
        """Waits for the shell prompt, pressing Enter every ``poke`` seconds
        (a board still booting buffers them; a shell answers each with a prompt)."""
        deadline = self.clock() + timeout
        seen = b""
        while self.clock() < deadline:
            self.transport.write(b"\n")
            until = min(self.clock() + poke, deadline)
            while self.clock() < until:
                seen = (seen + self._read(until - self.clock()))[-4096:]
                if self.prompt in seen:
                    return
        raise ConsoleError(f"no {self.prompt.decode().strip()!r} prompt on the console within {timeout:.0f}s")

    def run(self, command: str, timeout: float, *, on_data: Callable[[bytes], None] | None = None,
            idle: float | None = None) -> tuple[bytes, int]:
        """Runs ``command`` in the shell; returns its console output and exit status.

        ``on_data`` gets the output as it arrives (for event parsing);
        ``idle`` bounds the time without any output, ``timeout`` the whole.
        """
        nonce = secrets.token_hex(4)
        if len(command) > LINE_MAX:
            path = f"{STAGE_DIR}/cmd-{nonce}.sh"
            self.write_file(path, command + "\n", timeout=min(timeout, 60.0))
            command = f"sh {path}"
        begin = re.compile(rb"SIBEG_" + nonce.encode() + rb"\r?\n")
        end = re.compile(rb"SIRC_" + nonce.encode() + rb":(\d+)")
        self.transport.write(
            f"printf 'SIBEG_%s\\n' {nonce}; {{ {command}; }} </dev/null; printf 'SIRC_%s:%d\\n' {nonce} $?\n".encode()
        )
        start = self.clock()
        last = start
        buf = b""
        out_from = -1
        fed = 0
        while True:
            now = self.clock()
            if now - start >= timeout:
                raise ConsoleError(f"{_short(command)}: not finished within {timeout:.0f}s")
            if idle is not None and now - last >= idle:
                raise ConsoleError(f"{_short(command)}: no console output for {idle:.0f}s")
            wait = timeout - (now - start)
            if idle is not None:
                wait = min(wait, idle - (now - last))
            data = self._read(min(wait, 1.0))
            if not data:
                continue
            last = self.clock()
            buf += data
            if out_from < 0:
                b = begin.search(buf)
                if b is None:
                    continue
                out_from = fed = b.end()
            m = end.search(buf, out_from)
            stop = m.start() if m else len(buf)
            if on_data and stop > fed:
                on_data(buf[fed:stop])
                fed = stop
            if m:
                return buf[out_from:m.start()], int(m.group(1))

    def write_file(self, path: str, content: str, *, mode: str = "0644", timeout: float = 60.0) -> None:
        """Writes ``content`` (text) to ``path`` on the board, in pieces short
        enough for the line editor; the file is created with ``mode``."""
        self._check_short(f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0] or '/')} && "
                          f"(umask 077; : >{shlex.quote(path)}) && chmod {mode} {shlex.quote(path)}", timeout)
        budget = LINE_MAX - 40 - len(path)
        for line in content.splitlines(keepends=True):
            body, newline = line.rstrip("\r\n"), line.endswith("\n")
            i = 0
            while True:   # a line end is printed by printf, never typed inside quotes
                n = budget
                while n > 1 and len(shlex.quote(body[i:i + n])) > budget:   # quotes grow when quoted
                    n //= 2
                last = i + n >= len(body)
                fmt = "'%s\\n'" if (last and newline) else "'%s'"
                self._check_short(f"printf {fmt} {shlex.quote(body[i:i + n])} >>{shlex.quote(path)}", timeout)
                i += n
                if last:
                    break

    def _check_short(self, command: str, timeout: float) -> None:
        if len(command) > LINE_MAX:   # a quoted piece full of quotes: never expected, never split
            raise ConsoleError(f"{_short(command)}: longer than the console line ({LINE_MAX})")
        self.check(command, timeout)

    def check(self, command: str, timeout: float = 30.0) -> bytes:
        """``run`` that raises ConsoleError on a non-zero status."""
        out, rc = self.run(command, timeout)
        if rc != 0:
            text = out.decode(errors="replace").strip().replace("\r", "")
            raise ConsoleError(f"{_short(command)}: exit status {rc}: {text[-300:]}")
        return out


def _short(command: str) -> str:
    first = command.splitlines()[0] if command else ""
    return first if len(first) <= 60 else first[:57] + "..."


def install_command(sources: list[str], *, events: str = "console", checksum: str | None = None,
                    headers: dict[str, str] | None = None, cacert: str | None = None,
                    insecure_tls: bool = False, extra_args: list[str] | None = None,
                    bearer_file: str | None = None, program: str = "sysinstall",
                    disk_image: bool = False, bmap: str | None = None) -> str:
    """The shell command line of one unattended install (quoted for the shell).

    With ``disk_image`` the one source is a whole-disk image (``--disk-image``),
    ``checksum`` its SHA-256 and ``bmap`` its block map.
    """
    if disk_image and len(sources) != 1:
        raise ValueError("a whole-disk image is one source, without DATA")
    if bmap and not disk_image:
        raise ValueError("--bmap goes with a whole-disk image")
    argv = [program, "install", "--yes", "--events", events]
    # The events carry the progress; sysinstall's own plain progress lines on
    # stderr would share the console with them (and, unframed, break them up).
    if not any(a == "--progress" or a.startswith("--progress=") for a in extra_args or []):
        argv += ["--progress", "none"]
    if checksum:
        argv += ["--disk-image-sha256" if disk_image else "--rootfs-sha256", checksum]
    if bmap:
        argv += ["--bmap", bmap]
    for name, value in (headers or {}).items():
        argv += ["--header", f"{name}: {value}"]
    if bearer_file:
        argv += ["--bearer-file", bearer_file]
    if cacert:
        argv += ["--cacert", cacert]
    if insecure_tls:
        argv.append("--insecure-tls")
    argv += list(extra_args or [])
    argv += ["--disk-image", *sources] if disk_image else sources
    return " ".join(shlex.quote(a) for a in argv)


def upgrader_install(console: Console, command: str, *, events: str, timeout: float, idle: float,
                     logger: logging.Logger) -> InstallResult:
    """Runs one install command, turning its events into progress lines;
    the summary from ``SUMMARY_FILE`` when the console mangled the summary line."""
    parser = EventParser(mode=events)
    progress = ProgressLog(logger)
    started = time.monotonic()

    def on_data(chunk: bytes) -> None:
        for event in parser.feed(chunk):
            progress(event)

    _, rc = console.run(command, timeout, on_data=on_data, idle=idle)
    for event in parser.feed(b"\n"):   # a last line without its LF
        progress(event)
    summary = progress.summary
    if summary is None:
        out, frc = console.run(f"cat {SUMMARY_FILE} 2>/dev/null", 30)
        if frc == 0:
            logger.warning("the summary line was lost on the console; read %s instead", SUMMARY_FILE)
            for event in EventParser(mode="auto").parse_lines(out.split(b"\n")):
                if event.get("kind") == "summary":
                    summary = event
    if parser.dropped or progress.lost:
        logger.warning("%d event line(s) broken up by other console output were dropped; %d event(s) "
                       "missing from the sequence", parser.dropped, progress.lost)
    code, error = outcome(summary, rc, progress.failure)
    if summary is not None and rc != code:
        logger.warning("the shell saw exit status %d, the summary says %d", rc, code)
    if error is not None:
        raise error
    return InstallResult(exit_code=code, summary=summary, events=progress.count, dropped=parser.dropped, lost=progress.lost,
                         framed=parser.framed_seen, seconds=time.monotonic() - started)
