"""Settings every test shares: no network for Hugging Face, quiet tokenizers, a kubetune-free HOME cache."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")


def _hold_the_logging_lock_while_pytest_attaches_its_log_capture() -> None:
    """At every test phase pytest attaches its log capture to each logger by iterating logging's dictionary of
    loggers, without logging's lock. An operator running in a thread of the test process (`KopfRunner`) may
    create a logger meanwhile (kopf creates `kopf.activities.*` when an activity first runs; a lazily imported
    module creates its own), and the phase then fails with "dictionary changed size during iteration" (seen in
    CI). `logging.getLogger` takes that lock, so holding it here makes the two wait for each other."""
    import logging

    from _pytest import logging as pytest_logging

    enter = pytest_logging.catching_logs.__enter__

    def enter_locked(self: pytest_logging.catching_logs) -> logging.Handler:
        with logging._lock:  # type: ignore[attr-defined]
            return enter(self)

    pytest_logging.catching_logs.__enter__ = enter_locked


_hold_the_logging_lock_while_pytest_attaches_its_log_capture()
