"""What an install's events mean to a lab: progress log lines, a result, an error."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "warning": logging.WARNING,
          "info": logging.INFO, "debug": logging.DEBUG}


class SysinstallError(Exception):
    """sysinstall ended with a non-zero exit status (or never told how it ended)."""

    def __init__(self, exit_code: int | None, code: str, reason: str, *, retryable: bool = False,
                 summary: dict[str, Any] | None = None):
        self.exit_code = exit_code
        self.code = code
        self.reason = reason
        self.retryable = retryable
        self.summary = summary
        super().__init__(f"sysinstall failed (exit {exit_code}, {code}"
                         f"{', retryable' if retryable else ''}): {reason}")


class ConsoleError(Exception):
    """The upgrader's console did not answer as expected (no prompt, no end of a command)."""


@dataclass
class InstallResult:
    """How an install ended: the exit status and sysinstall's summary event."""

    exit_code: int
    summary: dict[str, Any] | None
    events: int = 0
    dropped: int = 0
    lost: int = 0
    framed: bool = False
    attempts: int = 1
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"exit": self.exit_code, "summary": self.summary, "events": self.events,
                "dropped": self.dropped, "lost": self.lost, "framed": self.framed, "attempts": self.attempts,
                "seconds": round(self.seconds, 1)}


def _mib(n: Any) -> str:
    return f"{n / 1048576:.1f} MiB" if isinstance(n, (int, float)) else "?"


@dataclass
class ProgressLog:
    """Turns events into log lines: one per step start/end, message and
    failure, and progress at most every ``interval`` seconds or 10 % of a step."""

    logger: logging.Logger
    interval: float = 5.0
    clock: Callable[[], float] = time.monotonic
    summary: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    count: int = 0
    lost: int = 0
    """events missing from the ``seq`` numbering (lines the console mangled)"""
    _seq: int | None = field(default=None, repr=False)
    _last: tuple[float, int] = field(default=(0.0, -1), repr=False)

    def __call__(self, event: dict[str, Any]) -> None:
        self.count += 1
        seq = event.get("seq")
        if isinstance(seq, int):
            if self._seq is not None and seq > self._seq + 1:
                self.lost += seq - self._seq - 1
            self._seq = seq
        kind = event.get("kind", event.get("event"))
        step = event.get("step") or event.get("phase") or ""
        log = self.logger
        if kind == "plan":
            log.info("plan: mode %s on %s", event.get("mode", "?"), event.get("device", "?"))
        elif kind == "step_start":
            self._last = (0.0, -1)
            log.info("[%s] %s", event.get("phase", "?"), step)
        elif kind == "progress":
            self._progress(event, step)
        elif kind == "step_end":
            verdict = event.get("verdict", "?")
            log.log(logging.WARNING if verdict == "failed" else logging.INFO, "[%s] %s: %s",
                    event.get("phase", "?"), step, verdict)
        elif kind == "message":
            log.log(LEVELS.get(str(event.get("level", "info")), logging.INFO), "sysinstall: %s",
                    event.get("text", ""))
        elif kind == "failure":
            self.failure = event
            log.error("failure %s%s: %s", event.get("code", "?"),
                      " (retryable)" if event.get("retryable") else "", event.get("error", ""))
        elif kind == "summary":
            self.summary = event
            log.info("summary: %s, exit %s", event.get("result", "?"), event.get("exit", "?"))

    def _progress(self, event: dict[str, Any], step: str) -> None:
        done, total = event.get("bytes_done"), event.get("bytes_total")
        now = self.clock()
        tenth = int(done * 10 // total) if isinstance(done, int) and isinstance(total, int) and total > 0 else -1
        last_time, last_tenth = self._last
        if tenth == last_tenth and now - last_time < self.interval:
            return
        self._last = (now, tenth)
        rate = event.get("rate")
        rate_s = f", {rate / 1e6:.1f} MB/s" if isinstance(rate, (int, float)) else ""
        if tenth >= 0:
            self.logger.info("%s: %d%% (%s of %s%s)", step, done * 100 // total, _mib(done), _mib(total), rate_s)
        else:
            self.logger.info("%s: %s%s", step, _mib(done), rate_s)


def outcome(summary: dict[str, Any] | None, shell_rc: int | None,
            failure: dict[str, Any] | None = None) -> tuple[int, SysinstallError | None]:
    """The exit status of a run and the error to raise for it (None on success).

    The summary's ``exit`` is the authority; the shell's ``$?`` is used when no
    summary arrived (and must then be 0 to count as success: a run without a
    summary that the shell saw succeed is still reported, with code
    ``no_summary``, since a lab cannot tell what was written).
    """
    if summary is not None and isinstance(summary.get("exit"), int):
        code = summary["exit"]
        if code == 0:
            return 0, None
        return code, SysinstallError(code, str(summary.get("code", "failed")),
                                     str(summary.get("error", "no reason given")),
                                     retryable=bool(summary.get("retryable", False)), summary=summary)
    if failure is not None:
        return (shell_rc if shell_rc is not None else -1), SysinstallError(
            shell_rc, str(failure.get("code", "failed")), str(failure.get("error", "")),
            retryable=bool(failure.get("retryable", False)))
    return (shell_rc if shell_rc is not None else -1), SysinstallError(
        shell_rc, "no_summary", "sysinstall printed no summary event (was the console cut off?)")
