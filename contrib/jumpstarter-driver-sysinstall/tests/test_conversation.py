"""The console conversation, against a fake console (tests/fakeboard.py).

A unit test only: the fake imitates the upgrader shell; the real one is
driven by the qemu tier (tests/qemu/jumpstarter.sh in the repository).
"""

import logging
import shlex

import pytest
from fakeboard import FakeBoard, events_fail, events_ok

from jumpstarter_driver_sysinstall.conversation import (
    LINE_MAX,
    Console,
    install_command,
    upgrader_install,
)
from jumpstarter_driver_sysinstall.events import frame
from jumpstarter_driver_sysinstall.report import ConsoleError, SysinstallError

log = logging.getLogger("test")


def console(board):
    return Console(board, clock=board.clock, logger=log)


def test_wait_prompt_pokes_a_booting_board_until_the_shell_answers():
    board = FakeBoard(boot_reads=5)
    console(board).wait_prompt(60)
    assert board.boot_reads == 0


def test_wait_prompt_times_out_with_a_named_error():
    board = FakeBoard(boot_reads=10**6)
    with pytest.raises(ConsoleError, match="no 'sysinstall#' prompt on the console within 20s"):
        console(board).wait_prompt(20)


def test_run_returns_the_output_between_the_markers_and_the_status():
    board = FakeBoard(boot_reads=0, summary_file="hello\r\n")
    c = console(board)
    assert c.run("cat /run/sysinstall/summary", 10) == (b"hello\r\n", 0)
    assert c.run("cat /nonexistent", 10) == (b"", 1)
    assert c.run("frobnicate", 10)[1] == 127


def test_run_times_out_when_the_end_marker_never_comes():
    board = FakeBoard(boot_reads=0)
    board.write = lambda data: None   # a console that swallows input
    with pytest.raises(ConsoleError, match="not finished within 5s"):
        console(board).run("true", 5)


def test_a_long_command_is_written_to_a_file_in_pieces_and_run_from_there():
    board = FakeBoard(boot_reads=0)
    c = console(board)
    header = "X-Long: " + "a'b" * 400
    cmd = install_command(["/installer/image.tar.zst"], headers={"X-Long": "a'b" * 400})
    assert len(cmd) > LINE_MAX
    result = upgrader_install(c, cmd, events="console", timeout=60, idle=30, logger=log)
    assert result.exit_code == 0
    staged = [p for p in board.files if p.startswith("/run/sysinstall/lab/cmd-")]
    assert len(staged) == 1 and board.files[staged[0]] == cmd + "\n"
    assert header in board.files[staged[0]].replace("'\"'\"'", "'").replace("--header '", "")
    assert max(len(x) for x in board.lines) < 1024   # busybox's line editor keeps 1024 bytes


def test_install_success_gives_the_summary_and_logs_progress(caplog):
    board = FakeBoard(boot_reads=0, noise="[   3.1] random: crng init done ")
    caplog.set_level(logging.INFO)
    r = upgrader_install(console(board), install_command(["/installer/image.tar.zst"]), events="console",
                         timeout=60, idle=30, logger=log)
    assert r.exit_code == 0 and r.summary["result"] == "pass" and r.framed and r.dropped == 0
    assert r.events == 5 and r.lost == 0
    text = caplog.text
    assert "plan: mode initial on /dev/mmcblk0" in text
    assert "unpack APP, APP_b: 50% (0.0 MiB of 0.0 MiB, 1.0 MB/s)" in text
    assert "summary: pass, exit 0" in text


def test_install_failure_raises_with_code_reason_and_exit():
    board = FakeBoard(boot_reads=0, runs=[(events_fail("checksum_mismatch", False, 3), 3)])
    with pytest.raises(SysinstallError) as e:
        upgrader_install(console(board), install_command(["x"]), events="console", timeout=60, idle=30,
                         logger=log)
    assert (e.value.exit_code, e.value.code, e.value.retryable) == (3, "checksum_mismatch", False)
    assert "connection refused" in e.value.reason


def test_a_mangled_summary_line_is_read_back_from_the_summary_file(caplog):
    summary = events_ok()[-1]
    board = FakeBoard(boot_reads=0, mangle_summary=True, summary_file=frame(summary) + "\n")
    r = upgrader_install(console(board), install_command(["x"]), events="console", timeout=60, idle=30,
                         logger=log)
    assert r.summary == summary and r.dropped == 1 and r.lost == 0   # the summary is the last event
    assert "cat /run/sysinstall/summary 2>/dev/null" in board.commands
    assert "read /run/sysinstall/summary instead" in caplog.text


def test_no_summary_at_all_is_an_error_even_with_status_0():
    board = FakeBoard(boot_reads=0, mangle_summary=True)
    with pytest.raises(SysinstallError) as e:
        upgrader_install(console(board), install_command(["x"]), events="console", timeout=60, idle=30,
                         logger=log)
    assert e.value.code == "no_summary" and e.value.exit_code == 0


def test_unframed_json_events_are_read_in_json_mode():
    board = FakeBoard(boot_reads=0, framed=False)
    r = upgrader_install(console(board), install_command(["x"], events="json"), events="json", timeout=60,
                         idle=30, logger=log)
    assert r.exit_code == 0 and not r.framed and r.events == 5


def test_the_install_command_quotes_every_argument():
    cmd = install_command(["https://h/r.tar.zst", "/installer/data.tar.gz"], checksum="ab" * 32,
                          headers={"X-Token": "a b'c"}, cacert="/run/ca.pem", insecure_tls=True,
                          extra_args=["--mode", "update"], bearer_file="/run/b")
    assert cmd == ("sysinstall install --yes --events console --progress none --rootfs-sha256 " + "ab" * 32 +
                   " --header 'X-Token: a b'\"'\"'c' --bearer-file /run/b --cacert /run/ca.pem --insecure-tls"
                   " --mode update https://h/r.tar.zst /installer/data.tar.gz")


def test_events_missing_from_the_sequence_are_counted():
    events = events_ok()
    board = FakeBoard(boot_reads=0, runs=[(events[:1] + events[3:], 0)])
    r = upgrader_install(console(board), install_command(["x"]), events="console", timeout=60, idle=30,
                         logger=log)
    assert r.lost == 2 and r.exit_code == 0


def test_progress_none_unless_the_caller_chose_a_progress():
    assert "--progress none" in install_command(["x"])
    cmd = install_command(["x"], extra_args=["--progress", "plain"])
    assert "--progress none" not in cmd and cmd.count("--progress") == 1


def test_a_whole_disk_image_is_one_source_with_its_own_checksum_and_bmap():
    cmd = install_command(["http://h/disk.wic.zst"], checksum="ab" * 32, disk_image=True,
                          bmap="http://h/disk.wic.bmap")
    words = shlex.split(cmd)
    assert words[-2:] == ["--disk-image", "http://h/disk.wic.zst"]
    assert words[words.index("--disk-image-sha256") + 1] == "ab" * 32
    assert words[words.index("--bmap") + 1] == "http://h/disk.wic.bmap"
    assert "--rootfs-sha256" not in words
    with pytest.raises(ValueError):
        install_command(["a", "b"], disk_image=True)
    with pytest.raises(ValueError):
        install_command(["a"], bmap="m")
