"""The driver's signal guard: SIGINT and SIGTERM become KeyboardInterrupt in the main thread with the
signal kept, Tune's own SIGINT handler is off while it is active, and everything is restored after."""

import os
import signal
import time

import pytest

from econ_ray.search.interrupt import SearchInterrupted, signals_interrupt


def _wait_for_signal() -> None:
    for _ in range(200):  # the handler runs between bytecodes, promptly
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_becomes_search_interrupted(sig):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    tune_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    with signals_interrupt() as guard:
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
            _wait_for_signal()
        exc = guard.interrupted()
    assert isinstance(exc, SearchInterrupted) and not isinstance(exc, Exception)
    assert exc.signum == sig and exc.exit_code == 128 + sig and exc.signal_name == signal.Signals(sig).name
    assert {s: signal.getsignal(s) for s in before} == before
    assert os.environ.get("TUNE_DISABLE_SIGINT_HANDLER") == tune_env


def test_rearm_takes_the_signals_back_from_a_later_handler():
    seen = []
    with signals_interrupt() as guard:
        signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))  # what ray.init does
        guard.rearm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            _wait_for_signal()
        assert guard.signum == signal.SIGTERM and seen == []


def test_a_second_signal_gets_the_previous_behaviour():
    seen = []
    old = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with signals_interrupt():
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
                _wait_for_signal()
            os.kill(os.getpid(), signal.SIGTERM)  # the second: the handler from before the guard
            _wait_for_signal()
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)
