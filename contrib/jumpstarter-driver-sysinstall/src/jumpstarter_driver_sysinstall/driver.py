"""The exporter side: a Jetson board running the sysinstall upgrader initramfs.

The driver holds the board's ``serial`` child (its console, e.g. a
``jumpstarter_driver_pyserial.driver.PySerial``) and, optionally, its
``power`` child (any power driver). The conversation with the upgrader runs
in the client (``client.py``), over the serial child's stream, as
Jumpstarter's flasher clients do; the driver gives it its settings and the
exporter's clock (a board without an RTC battery starts in 1970, and TLS
needs the right date).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from jumpstarter.common.exceptions import ConfigurationError
from jumpstarter.driver import Driver, export

POWER_MODES = ("auto", "cycle", "on", "none")
EVENT_MODES = ("console", "json")


@dataclass(kw_only=True)
class SysinstallFlasher(Driver):
    """A board whose console runs the sysinstall upgrader shell."""

    prompt: str = field(default="sysinstall# ")
    """the upgrader shell's prompt (initramfs/profile)"""
    boot_timeout: float = field(default=600.0)
    """seconds from power-on (or the first Enter) to the prompt"""
    install_timeout: float = field(default=7200.0)
    """seconds one install may take"""
    idle_timeout: float = field(default=900.0)
    """seconds an install may print nothing (sysinstall reports progress every few seconds)"""
    power_mode: str = field(default="auto")
    """before an install: cycle or switch on the power child, or none (the board is
    already at the prompt); auto: cycle when there is a power child"""
    events: str = field(default="console")
    """--events given to sysinstall: console (framed lines), json (upgraders
    that predate the framed form)"""
    program: str = field(default="sysinstall")

    def __post_init__(self):
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if "serial" not in self.children:
            raise ConfigurationError("SysinstallFlasher needs a 'serial' child (the board's console)")
        if self.power_mode not in POWER_MODES:
            raise ConfigurationError(f"SysinstallFlasher power_mode {self.power_mode!r}: one of {POWER_MODES}")
        if self.power_mode in ("cycle", "on") and "power" not in self.children:
            raise ConfigurationError(f"SysinstallFlasher power_mode {self.power_mode!r} needs a 'power' child")
        if self.events not in EVENT_MODES:
            raise ConfigurationError(f"SysinstallFlasher events {self.events!r}: one of {EVENT_MODES}")

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_sysinstall.client.SysinstallFlasherClient"

    @export
    def exporter_time(self) -> float:
        """The exporter's clock (seconds since the epoch), to set the board's."""
        return time.time()

    @export
    def settings(self) -> dict[str, Any]:
        """The conversation's settings from the exporter configuration."""
        mode = self.power_mode
        if mode == "auto":
            mode = "cycle" if "power" in self.children else "none"
        return {
            "prompt": self.prompt,
            "boot_timeout": self.boot_timeout,
            "install_timeout": self.install_timeout,
            "idle_timeout": self.idle_timeout,
            "power_mode": mode,
            "events": self.events,
            "program": self.program,
        }
