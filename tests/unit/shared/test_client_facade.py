"""kubetune.client.Client's own checks, before anything is sent: a client bound to a namespace refuses a
manifest for another (as `kubectl -n` does), a pin must be a checkpoint name, and the connection is closed
even when the caller forgets `close()`."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from kubetune.api import ModelDeployment
from kubetune.client import Client
from kubetune.client.backend import AdmissionError


class Recorder:
    """A back end that records what reaches it."""

    default_namespace = "default"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closed = 0

    def apply(self, items: list, *, create_only: bool = False) -> list:
        self.calls.append(("apply", items))
        return []

    def patch_spec(self, kind: str, namespace: str, name: str, patch: dict) -> ModelDeployment:
        """Records the patch and answers, as the real back ends do, with the typed patched object."""
        self.calls.append(("patch_spec", (kind, namespace, name, patch)))
        return ModelDeployment.model_validate(
            {
                "apiVersion": "kubetune.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"model": {"uri": "hf://org/model"}, **patch},
            }
        )

    def close(self) -> None:
        self.closed += 1


def job_in(namespace: str) -> dict:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "travel", "namespace": namespace},
        "spec": {"baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "dataset": {"train": {"uri": "t.jsonl"}}},
    }


def test_a_client_bound_to_a_namespace_refuses_a_manifest_for_another() -> None:
    backend = Recorder()
    kt = Client(backend, namespace="default")
    with pytest.raises(AdmissionError) as err:
        kt.apply(job_in("team-b"))
    assert "metadata.namespace" in str(err.value) and "team-b" in str(err.value)
    with pytest.raises(AdmissionError):
        kt.create(job_in("team-b"))
    assert backend.calls == []
    kt.close()


def test_a_local_client_told_its_namespace_refuses_another(tmp_path: Path) -> None:
    with Client.local(tmp_path / "runs", namespace="default") as kt, pytest.raises(AdmissionError) as err:
        kt.apply(job_in("team-b"))
    assert "does not match" in str(err.value)


@pytest.mark.parametrize("pin", ["../../etc/passwd", "Check Point 🚀", "checkpoint-1/..", "a" * 256])
def test_a_pin_must_be_a_checkpoint_name(pin: str) -> None:
    backend = Recorder()
    kt = Client(backend, namespace="default")
    with pytest.raises(AdmissionError, match=r"spec\.promotion\.pin: .*not a checkpoint name"):
        kt.pin("travel", pin)
    assert backend.calls == []
    kt.pin("travel", "checkpoint-400")
    kt.pin("travel", "")
    assert [call[1][3] for call in backend.calls] == [
        {"promotion": {"pin": "checkpoint-400"}},
        {"promotion": {"pin": ""}},
    ]


def test_a_forgotten_client_is_closed_once() -> None:
    backend = Recorder()
    Client(backend)
    gc.collect()
    assert backend.closed == 1
    closed = Recorder()
    kt = Client(closed)
    kt.close()
    del kt
    gc.collect()
    assert closed.closed == 1
