"""The one error reporter: how every command ends when it does not finish (README, "When the input is wrong")."""

from __future__ import annotations

import signal

import pytest

from vggt_sparse_ns.cli_errors import reported
from vggt_sparse_ns.interrupts import Interrupted, reported_elsewhere_when
from vggt_sparse_ns.pipeline.errors import InputError


def run(error: BaseException, capsys, **options) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info, reported(**options):
        raise error
    return exit_info.value.code, capsys.readouterr().err


def test_wrong_input_is_one_line_on_stderr_and_status_1(capsys) -> None:
    status, err = run(InputError("--data photos does not exist."), capsys)
    assert status == 1 and err == "Error: --data photos does not exist.\n"


def test_brackets_in_a_message_are_printed_as_they_are(capsys) -> None:
    status, err = run(InputError("expected descriptors [frames, dim], got [bold]"), capsys)
    assert err == "Error: expected descriptors [frames, dim], got [bold]\n"


def test_an_unexpected_error_shows_its_traceback_then_the_same_line(capsys) -> None:
    status, err = run(ZeroDivisionError("division by zero"), capsys)
    assert status == 1 and "Traceback" in err and err.endswith("Error: division by zero\n")


def test_verbose_shows_the_traceback_of_wrong_input_too(capsys) -> None:
    status, err = run(InputError("no images"), capsys, verbose=True)
    assert status == 1 and "Traceback" in err


def test_ctrl_c_is_one_line_and_status_130(capsys) -> None:
    status, err = run(KeyboardInterrupt(), capsys, after_interrupt=lambda: "out was left as it was.")
    assert status == 130 and err == "Interrupted (Ctrl+C). out was left as it was.\n"


def test_sigterm_is_one_line_and_status_143(capsys) -> None:
    status, err = run(Interrupted(signal.SIGTERM), capsys)
    assert status == 143 and err == "Interrupted (SIGTERM).\n"


def test_sigterm_that_stops_a_process_after_another_one_reported_its_failure_is_no_line_with_status_143(
    capsys,
) -> None:
    with pytest.raises(SystemExit) as exit_info, reported_elsewhere_when(lambda: True), reported():
        signal.raise_signal(signal.SIGTERM)
    assert exit_info.value.code == 143 and capsys.readouterr().err == ""


def test_sigterm_raises_interrupted_inside_and_the_handlers_come_back_after() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info, reported():
        signal.raise_signal(signal.SIGTERM)
    assert exit_info.value.code == 143
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_second_ctrl_c_while_the_line_is_printed_changes_neither_the_line_nor_the_status(capsys) -> None:
    def second_ctrl_c() -> str:
        signal.raise_signal(signal.SIGINT)
        return "out was left as it was."

    status, err = run(Interrupted(signal.SIGTERM), capsys, after_interrupt=second_ctrl_c)
    assert status == 143 and err == "Interrupted (SIGTERM). out was left as it was.\n"


def test_a_second_ctrl_c_as_an_interrupted_command_ends_inside_another_reported_block_is_not_a_second_line(
    capsys,
) -> None:
    with pytest.raises(SystemExit) as exit_info, reported():
        try:
            with reported():
                raise Interrupted(signal.SIGTERM)
        finally:  # the exit on its way out of the command
            signal.raise_signal(signal.SIGINT)
    assert exit_info.value.code == 143 and capsys.readouterr().err == "Interrupted (SIGTERM).\n"
