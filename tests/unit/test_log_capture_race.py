"""The test harness itself: pytest's log capture and loggers created by another thread (an in-process operator)."""

import logging
import sys
import threading
import time

from _pytest.logging import LogCaptureHandler, catching_logs


def test_log_capture_can_start_while_another_thread_creates_loggers() -> None:
    stop = threading.Event()

    def create_loggers() -> None:
        n = 0
        while not stop.is_set():
            logging.getLogger(f"kubetune.test.race.{n}")
            n += 1

    thread = threading.Thread(target=create_loggers)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads take turns often: unlocked, the race shows within milliseconds
    thread.start()
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            with catching_logs(LogCaptureHandler()):
                pass
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(switch)
        manager = logging.Logger.manager
        with logging._lock:  # type: ignore[attr-defined]
            for name in [n for n in manager.loggerDict if n.startswith("kubetune.test.race")]:
                del manager.loggerDict[name]
