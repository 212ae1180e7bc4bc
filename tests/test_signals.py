"""Which signals stop a command like Ctrl-C, and the exit status and word each gives."""

from __future__ import annotations

import signal

import pytest

from lgcvd_runtime.signals import Terminated, exit_code, sigterm_as_interrupt, stop_word


@pytest.fixture
def hangup_restored():
    before = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, before)


def test_a_hangup_stops_a_command_unless_it_is_ignored_as_under_nohup(hangup_restored):
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    with pytest.raises(Terminated) as stop, sigterm_as_interrupt():
        signal.raise_signal(signal.SIGHUP)
    assert (exit_code(stop.value), stop_word(stop.value)) == (129, "hung up")
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # restored after the block
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with sigterm_as_interrupt():
        signal.raise_signal(signal.SIGHUP)  # ignored: the block runs on
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


def test_sigterm_and_ctrl_c_keep_their_codes_and_words():
    with pytest.raises(Terminated) as stop, sigterm_as_interrupt():
        signal.raise_signal(signal.SIGTERM)
    assert (exit_code(stop.value), stop_word(stop.value)) == (143, "terminated")
    ctrl_c = KeyboardInterrupt()
    assert (exit_code(ctrl_c), stop_word(ctrl_c)) == (130, "interrupted")
