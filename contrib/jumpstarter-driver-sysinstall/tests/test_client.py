"""Driver and client through Jumpstarter's local serve(), Jumpstarter's PySerial
driver on a pty whose other end is the fake console (tests/fakeboard.py).

A unit test of the plumbing (exported calls, the serial child's stream, the
retry and power logic); the real upgrader is driven by the qemu tier.
"""

import os
import pty
import select
import threading

import pytest
from fakeboard import FakeBoard, events_fail, events_ok

from jumpstarter.common.utils import serve
from jumpstarter_driver_power.driver import MockPower
from jumpstarter_driver_pyserial.driver import PySerial
from jumpstarter_driver_sysinstall.driver import SysinstallFlasher
from jumpstarter_driver_sysinstall.report import SysinstallError


class PtyBoard:
    """FakeBoard behind a pty: the slave is the board's serial port."""

    def __init__(self, board):
        self.board = board
        self.master, slave = pty.openpty()
        self.path = os.ttyname(slave)
        self.stop = False
        self.thread = threading.Thread(target=self.pump, daemon=True)

    def pump(self):
        while not self.stop:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if r:
                try:
                    self.board.write(os.read(self.master, 4096))
                except OSError:
                    return
            if self.board.out:
                os.write(self.master, bytes(self.board.out))
                self.board.out.clear()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()


def flasher(path, **config):
    return SysinstallFlasher(children={"serial": PySerial(url=path), "power": MockPower()}, **config)


def test_flash_through_serve_sets_the_clock_and_returns_the_summary(tmp_path):
    board = FakeBoard(boot_reads=0)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with PtyBoard(board) as b, serve(flasher(b.path)) as client:
        assert client.call("settings")["power_mode"] == "cycle"
        result = client.flash("https://h/rootfs.tar.zst", checksum="ab" * 32, headers=["X-A: 1"],
                              bearer_token="s3cret", cacert_file=str(ca), retries=0, power="none")
    assert result.exit_code == 0 and result.summary["result"] == "pass"
    assert board.clock_set is not None and abs(board.clock_set - __import__("time").time()) < 30
    assert board.files["/run/sysinstall/lab/ca.pem"] == ca.read_text()
    assert "/run/sysinstall/lab/bearer" not in board.files   # removed after the run
    run = [c for c in board.commands if c.startswith("sysinstall install")]
    assert run == ["sysinstall install --yes --events console --progress none --rootfs-sha256 " + "ab" * 32 +
                   " --header 'X-A: 1' --bearer-file /run/sysinstall/lab/bearer"
                   " --cacert /run/sysinstall/lab/ca.pem https://h/rootfs.tar.zst"]


def test_a_retryable_failure_is_run_again_and_a_final_one_raises():
    board = FakeBoard(boot_reads=0, runs=[(events_fail(), 4), (events_ok(), 0)])
    with PtyBoard(board) as b, serve(flasher(b.path)) as client:
        result = client.flash("/installer/image.tar.zst", retries=1, power="on")
        assert result.exit_code == 0 and result.attempts == 2
        board.runs = [(events_fail("checksum_mismatch", False, 3), 3)]
        with pytest.raises(SysinstallError) as e:
            client.flash("/installer/image.tar.zst", retries=3, power="none")
    assert "checksum_mismatch" in str(e.value) and "exit 3" in str(e.value)


def test_the_cli_prints_the_result_and_exits_with_sysinstalls_status():
    from click.testing import CliRunner

    board = FakeBoard(boot_reads=0, runs=[(events_fail("input_missing", False, 3), 3), (events_ok(), 0)])
    with PtyBoard(board) as b, serve(flasher(b.path, power_mode="none")) as client:
        # as `j` runs it: standalone_mode=False, the exit status is the return value
        assert client.cli()(["flash", "/installer/missing.tar.zst"], standalone_mode=False) == 3
        ok = CliRunner().invoke(client.cli(), ["flash", "/installer/image.tar.zst", "-O", "--mode initial"])
    assert ok.exit_code == 0, ok.output
    assert '"exit": 0' in ok.output.splitlines()[-1]
    installs = [c for c in board.commands if c.startswith("sysinstall install")]
    assert installs[-1].endswith("--mode initial /installer/image.tar.zst")
