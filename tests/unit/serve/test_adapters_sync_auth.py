"""The adapter sync sidecar of a ModelDeployment behind an API key (`spec.auth`): the sidecar gets the server's key
by the same secretKeyRef, and `kubetune-trainer serve-adapters-sync` sends it as `Authorization: Bearer`, so the
real built-in server, which guards /v1/load_lora_adapter like every /v1/* path, loads the adapters."""

from __future__ import annotations

import json

import httpx
import pytest
from serve_live import running_server

from kubetune.api import FineTuneJob, ModelDeployment
from kubetune.builders import adapters, serving
from kubetune.builders.promotion import Decision
from kubetune_trainer import adapters_sync
from kubetune_trainer.serve.options import ServeOptions
from tiny_adapters import lora_adapter

pytestmark = pytest.mark.timeout(180)
KEY = "sk-sync-7f3a9c"
SECRET = {"name": "travel-key", "key": "token"}


def _pod(gpus: int) -> dict:
    job = FineTuneJob.model_validate(
        {
            "metadata": {"name": "fr", "namespace": "team-a", "uid": "j-1"},
            "spec": {
                "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
                "dataset": {"train": {"uri": "pvc://d/t.jsonl"}},
            },
        }
    )
    md = ModelDeployment.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "team-a", "uid": "m-1"},
            "spec": {
                "model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
                "adapters": [{"name": "travel-fr", "fineTuneJob": {"name": "fr"}}],
                "auth": {"apiKeySecretRef": SECRET},
                "resources": {"gpus": gpus},
            },
        }
    )
    decision = Decision("promote", "base", "hf://Qwen/Qwen2.5-0.5B-Instruct", "Promoted", "")
    plan = serving.plan(md, decision, None)
    sources = [adapters.AdapterSource(0, md.spec.adapters[0], job)]
    outcomes = adapters.decide_adapters(md, sources, plan.served_uri, "2025-01-01T00:00:00Z")
    pool = adapters.adapter_pool(md, sources, outcomes)
    return serving.build_deployment(md, plan, None, pool=pool)["spec"]["template"]["spec"]


@pytest.mark.parametrize(("gpus", "server_var"), [(0, "KUBETUNE_API_KEY"), (1, "VLLM_API_KEY")])
def test_the_sync_sidecar_gets_the_servers_key_by_the_same_secret_reference(gpus, server_var):
    server, sync = _pod(gpus)["containers"]
    assert sync["name"] == "adapters-sync"
    ref = {"valueFrom": {"secretKeyRef": SECRET}}
    assert [e for e in server["env"] if e["name"] == server_var] == [{"name": server_var, **ref}]
    # The sidecar reads KUBETUNE_API_KEY whichever runtime it calls; never a value in the manifest.
    assert [e for e in sync["env"] if "API_KEY" in e["name"]] == [{"name": adapters_sync.API_KEY_ENV, **ref}]
    assert KEY not in json.dumps(sync) and all("value" not in e for e in sync["env"] if "API_KEY" in e["name"])


def test_the_sync_loop_loads_adapters_on_a_server_that_wants_a_key(tiny_model, tmp_path, monkeypatch, caplog):
    fr = lora_adapter(tiny_model, tmp_path / "fr" / "checkpoint-200", 5)
    file = tmp_path / "adapters.json"
    file.write_text(json.dumps({"adapters": [{"name": "travel-fr", "path": str(fr)}]}))
    argv = ["--adapters", str(file), "--once", "--interval", "0"]
    with running_server(tiny_model, tmp_path, ServeOptions(enable_lora=True, api_key=KEY)) as s:
        argv += ["--server", s.base_url]
        # Without the key the server refuses the load (401), and the loop says so and exits 1 with --once.
        monkeypatch.delenv(adapters_sync.API_KEY_ENV, raising=False)
        assert adapters_sync.main(argv) == 1
        assert "401" in caplog.text

        # With the key from the sidecar's environment (the Secret, by secretKeyRef): loaded, and served by name.
        monkeypatch.setenv(adapters_sync.API_KEY_ENV, KEY)
        assert adapters_sync.main(argv) == 0
        auth = {"Authorization": f"Bearer {KEY}"}
        models = httpx.get(f"{s.base_url}/v1/models", headers=auth).json()["data"]
        assert sorted(m["id"] for m in models) == ["tiny-chat", "travel-fr"]
        body = {"model": "travel-fr", "prompt": "the pool was", "max_tokens": 4}
        assert httpx.post(f"{s.base_url}/v1/completions", json=body, headers=auth, timeout=60).status_code == 200
    assert KEY not in caplog.text  # the key is never logged
