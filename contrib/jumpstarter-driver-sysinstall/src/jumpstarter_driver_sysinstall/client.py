"""The client side: drives one install through the board's console.

``flash`` follows ``j storage flash`` where it fits: a source (URL or a path
on the board), a checksum, headers, a bearer token, ``--cacert``,
``--insecure-tls``, retries of the whole operation, extra options; it powers
the board (or assumes it is on), waits for the upgrader's prompt, sets the
board's clock from the exporter's, runs ``sysinstall install --yes --events
console ...``, logs the events as progress and returns the summary.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any

import click
import pexpect

from .conversation import BEARER_PATH, CACERT_PATH, Console, install_command, upgrader_install
from .report import ConsoleError, InstallResult, SysinstallError
from jumpstarter_driver_composite.client import CompositeClient

AFTER = ("none", "reboot", "poweroff")


class PexpectTransport:
    """The console Transport over a pexpect session on the serial child."""

    def __init__(self, spawn):
        self.spawn = spawn

    def write(self, data: bytes) -> None:
        self.spawn.send(data)

    def read(self, timeout: float) -> bytes:
        try:
            return self.spawn.read_nonblocking(size=4096, timeout=timeout)
        except pexpect.TIMEOUT:
            return b""
        except pexpect.EOF as e:
            raise EOFError("the serial console closed") from e


def _no_newlines(what: str, values: list[str]) -> None:
    for v in values:
        if "\n" in v or "\r" in v:
            raise ValueError(f"{what} {v!r}: a line end would end the console command")


def _header_list(headers: dict[str, str] | list[str] | None) -> dict[str, str]:
    if headers is None:
        return {}
    if isinstance(headers, dict):
        return dict(headers)
    out = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header {h!r}: expected 'Name: value'")
        out[name.strip()] = value.strip()
    return out


@dataclass(kw_only=True)
class SysinstallFlasherClient(CompositeClient):
    """Client of SysinstallFlasher: ``flash`` runs one install on the board."""

    def flash(
        self,
        source: str,
        data: str | None = None,
        *,
        checksum: str | None = None,
        headers: dict[str, str] | list[str] | None = None,
        bearer_token: str | None = None,
        cacert_file: str | None = None,
        insecure_tls: bool = False,
        retries: int = 3,
        extra_args: list[str] | None = None,
        power: str | None = None,
        after: str = "none",
        events: str | None = None,
        console_debug: bool = False,
        disk_image: bool = False,
        bmap: str | None = None,
    ) -> InstallResult:
        """Installs SOURCE (rootfs tarball: URL or a path on the board) and
        DATA (optional) with the upgrader; returns how it ended. With
        ``disk_image`` SOURCE is a whole-disk image written over the device
        (``bmap``: its block map, a URL or a path on the board).

        Raises SysinstallError for a non-zero exit (its ``exit_code``,
        ``code`` and ``reason`` are sysinstall's), ConsoleError when the
        console does not answer. ``retries``: how many more times a run is
        tried after a retryable failure (sysinstall's ``retryable``, resumed
        from its journal) or, with power control, a console that never
        showed the prompt (power cycled again).
        """
        settings = self.call("settings")
        power = power or settings["power_mode"]
        events = events or settings["events"]
        if power not in ("cycle", "on", "none"):
            raise ValueError(f"power {power!r}: one of cycle, on, none")
        if power != "none" and "power" not in self.children:
            raise ValueError(f"power {power!r}: this exporter has no power child")
        if after not in AFTER:
            raise ValueError(f"after {after!r}: one of {', '.join(AFTER)}")
        hdrs = _header_list(headers)
        extra = list(extra_args or [])
        if disk_image and data:
            raise ValueError("a whole-disk image takes no DATA")
        _no_newlines("argument", [source, data or "", checksum or "", bearer_token or "", bmap or "", *extra,
                                  *hdrs.keys(), *hdrs.values()])
        cacert = None
        if cacert_file:
            with open(cacert_file) as f:
                cacert = f.read()
            if "-----BEGIN CERTIFICATE-----" not in cacert:
                raise ValueError(f"{cacert_file}: no PEM certificate in it")
        command = install_command(
            [source] + ([data] if data else []), events=events, checksum=checksum, headers=hdrs,
            cacert=CACERT_PATH if cacert else None, insecure_tls=insecure_tls, extra_args=extra,
            bearer_file=BEARER_PATH if bearer_token else None, program=settings["program"],
            disk_image=disk_image, bmap=bmap,
        )
        debug = None
        if console_debug:
            def debug(b: bytes) -> None:
                text = b.decode(errors="replace")
                if bearer_token:
                    text = text.replace(bearer_token, "***")
                sys.stderr.write(text)
                sys.stderr.flush()

        started = time.monotonic()
        # Raised after the serial stream is closed: from inside, its task group
        # would wrap the error in an ExceptionGroup.
        error: Exception | None = None
        with self.children["serial"].pexpect() as spawn:
            console = Console(PexpectTransport(spawn), prompt=settings["prompt"], logger=self.logger,
                              debug=debug)
            try:
                result = self._attempts(console, settings, command, events, cacert, bearer_token, power, retries)
                result.seconds = time.monotonic() - started
                self._after(console, after)
            except (SysinstallError, ConsoleError, EOFError) as e:
                error = e
        if error is not None:
            raise error
        self.logger.info("install finished in %.0fs: exit %d", result.seconds, result.exit_code)
        return result

    def _attempts(self, console: Console, settings: dict[str, Any], command: str, events: str,
                  cacert: str | None, bearer_token: str | None, power: str, retries: int) -> InstallResult:
        attempt = 0
        last: Exception | None = None
        while True:
            try:
                if power != "none" and (attempt == 0 or isinstance(last, ConsoleError)):
                    self._power(power)
                result = self._attempt(console, settings, command, events, cacert, bearer_token)
                result.attempts = attempt + 1
                return result
            except (SysinstallError, ConsoleError) as e:
                last = e
                again = e.retryable if isinstance(e, SysinstallError) else power != "none"
                if not again or attempt >= retries:
                    raise
                attempt += 1
                self.logger.warning("attempt %d failed (%s); trying again (%d of %d)", attempt, e, attempt, retries)
                time.sleep(min(2 ** attempt, 30))

    def _power(self, mode: str) -> None:
        power = self.children["power"]
        if mode == "cycle":
            self.logger.info("power cycling the board")
            power.cycle()
        else:
            self.logger.info("powering the board on")
            power.on()

    def _attempt(self, console: Console, settings: dict[str, Any], command: str, events: str,
                 cacert: str | None, bearer_token: str | None) -> InstallResult:
        self.logger.info("waiting for the upgrader prompt %r", settings["prompt"])
        console.wait_prompt(settings["boot_timeout"])
        console.check("true")   # in step with the shell: everything before it is consumed
        epoch = int(round(self.call("exporter_time")))
        console.check(f"date -s @{epoch} >/dev/null")
        board = console.check("date +%s").decode(errors="replace").split()
        exporter = self.call("exporter_time")
        if not board or not board[-1].isdigit() or abs(int(board[-1]) - exporter) > 5:
            raise ConsoleError(f"the board's clock reads {' '.join(board)!r} after date -s @{epoch}")
        self.logger.info("board clock set to the exporter's: %s",
                         time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)))
        if cacert:
            console.write_file(CACERT_PATH, cacert)
        if bearer_token:
            console.write_file(BEARER_PATH, bearer_token, mode="0600")
        self.logger.info("running: %s", command)
        try:
            return upgrader_install(console, command, events=events, timeout=settings["install_timeout"],
                                    idle=settings["idle_timeout"], logger=self.logger)
        finally:
            if bearer_token:
                console.run(f"rm -f {BEARER_PATH}", 30)

    def _after(self, console: Console, after: str) -> None:
        if after == "none":
            return
        self.logger.info("%s the board", "rebooting" if after == "reboot" else "powering off")
        # The upgrader's profile defines both as immediate (sync, then -f).
        console.transport.write(f"{after}\n".encode())
        if after == "poweroff" and "power" in self.children:
            time.sleep(3)
            self.children["power"].off()

    def cli(self):
        base = super().cli()

        @base.command()
        @click.argument("source")
        @click.argument("data", required=False)
        @click.option("--checksum", "--os-image-checksum", "checksum",
                      help="SHA-256 of the rootfs (sysinstall --rootfs-sha256)")
        @click.option("--checksum-file", "--os-image-checksum-file", "checksum_file",
                      type=click.Path(exists=True, dir_okay=False), help="file whose first word is the SHA-256")
        @click.option("--header", "headers", multiple=True, help="HTTP header 'Name: value' (repeatable)")
        @click.option("--bearer", envvar="SYSINSTALL_BEARER", help="bearer token (or SYSINSTALL_BEARER)")
        @click.option("--cacert", type=click.Path(exists=True, dir_okay=False),
                      help="PEM CA certificate(s) to trust besides the built-in roots")
        @click.option("--insecure-tls", "-k", is_flag=True, help="accept any server certificate (lab only)")
        @click.option("--retries", type=int, default=3, show_default=True,
                      help="more attempts after a retryable failure")
        @click.option("--option", "-O", "options", multiple=True,
                      help="extra sysinstall options, shell words (repeatable), e.g. -O '--mode update'")
        @click.option("--power", type=click.Choice(["cycle", "on", "none"]),
                      help="before the install (default: the exporter's power_mode)")
        @click.option("--after", type=click.Choice(AFTER), default="none", show_default=True,
                      help="what the board does after a successful install")
        @click.option("--events", type=click.Choice(["console", "json"]),
                      help="sysinstall --events (default: the exporter's)")
        @click.option("--console-debug", is_flag=True, help="copy the console to stderr")
        @click.option("--disk", "disk_image", is_flag=True,
                      help="SOURCE is a whole-disk image (sysinstall --disk-image)")
        @click.option("--bmap", help="the whole-disk image's bmap file (URL or a path on the board)")
        def flash(source, data, checksum, checksum_file, headers, bearer, cacert, insecure_tls, retries,
                  options, power, after, events, console_debug, disk_image, bmap):
            """Install a rootfs with the sysinstall upgrader; prints the result as JSON."""
            if checksum_file:
                with open(checksum_file) as f:
                    checksum = (f.read().split() or [""])[0]
            extra = [w for o in options for w in shlex.split(o)]
            try:
                result = self.flash(source, data, checksum=checksum, headers=list(headers), bearer_token=bearer,
                                    cacert_file=cacert, insecure_tls=insecure_tls, retries=retries,
                                    extra_args=extra, power=power, after=after, events=events,
                                    console_debug=console_debug, disk_image=disk_image, bmap=bmap)
            except SysinstallError as e:
                click.echo(json.dumps({"exit": e.exit_code, "code": e.code, "reason": e.reason,
                                       "retryable": e.retryable, "summary": e.summary}))
                click.echo(str(e), err=True)
                # click's Exit: `j` runs the CLI with standalone_mode=False and exits with this code.
                raise click.exceptions.Exit(
                    e.exit_code if isinstance(e.exit_code, int) and 0 < e.exit_code < 256 else 1
                ) from None
            except (ConsoleError, ValueError) as e:
                raise click.ClickException(str(e)) from e
            click.echo(json.dumps(result.as_dict()))

        return base
