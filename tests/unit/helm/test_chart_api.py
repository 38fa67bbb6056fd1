"""The chart's `kubetune api` (api.enabled): off by default; when on, its config reaches the server's own
settings code, its Service selects its pod (not the operator's), and its RBAC allows the calls it makes."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from chart_render import NAMESPACE, RELEASE, Render, by_kind

from kubetune.openai.server import settings_from

API = f"{RELEASE}-kubetune-api"
VALUES = {
    "api": {
        "enabled": True,
        "models": {"gpt-4o-mini-2024-07-18": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
        "jobDefaults": {"resources": {"gpus": 1}},
        "storedCompletions": {"enabled": True, "retentionDays": 7},
        "storage": {"claimName": "kubetune-files"},
    }
}


def named(docs: list[dict], kind: str, name: str = API) -> dict:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def test_the_api_server_is_off_by_default(render: Render) -> None:
    assert not [d for d in render() if d["metadata"]["name"].startswith(API)]


def test_its_config_reaches_the_server_settings(render: Render, tmp_path: Path) -> None:
    docs = render(VALUES)
    config = tmp_path / "config.yaml"
    config.write_text(named(docs, "ConfigMap")["data"]["config.yaml"])
    (container,) = named(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "api" and f"--keys-namespace={NAMESPACE}" in container["args"]
    args = argparse.Namespace(config=str(config), storage_root=str(tmp_path), keys_namespace=NAMESPACE)
    settings = settings_from(args)
    assert settings.models == VALUES["api"]["models"] and settings.job_defaults == {"resources": {"gpus": 1}}
    assert settings.store.enabled and settings.store.retention_days == 7
    assert settings.files.uri("team-a", "file-x") is None  # no such file yet; the template is the default
    assert yaml.safe_load(config.read_text())["filesUri"] == "pvc://kubetune-files/{namespace}/files/{id}.jsonl"
    pod = named(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "files", "persistentVolumeClaim": {"claimName": "kubetune-files"}} in pod["volumes"]


def test_its_service_selects_the_api_pod_only(render: Render) -> None:
    docs = render(VALUES)
    selector = named(docs, "Service")["spec"]["selector"]
    labels = named(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items() and selector["app.kubernetes.io/component"] == "api"


def test_its_rbac_allows_the_calls_it_makes_and_secrets_only_in_its_namespace(render: Render) -> None:
    docs = render(VALUES)
    cluster = named(docs, "ClusterRole")["rules"]
    calls = [("kubetune.dev", "finetunejobs", v) for v in ("get", "list", "create", "patch")]
    calls += [("kubetune.dev", "modeldeployments", "list"), ("", "events", "list")]
    for group, resource, verb in calls:
        assert any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in cluster)
    assert not any("secrets" in r["resources"] for r in cluster)
    role = named(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE and role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}
    ]


def test_every_api_object_is_a_valid_kubernetes_object(render: Render) -> None:
    from kubernetes.client import ApiClient
    from test_chart_render import _dropped

    client, dropped = ApiClient(), []
    for doc in render(VALUES):
        if doc["metadata"]["name"] == API:
            model = client._ApiClient__deserialize(doc, f"V1{doc['kind']}")  # the client's own JSON -> model path
            dropped += _dropped(doc, client.sanitize_for_serialization(model), f"{doc['kind']}/{API}")
    assert dropped == []


def test_files_in_s3_reach_the_server_settings_and_credentials_come_from_the_secret(render: Render, tmp_path: Path):
    from kubetune.openai.files_s3 import S3FileStore

    s3 = {
        "uri": "s3://team-files/kubetune",
        "endpoint": "http://minio.storage.svc:9000",
        "region": "us-east-1",
        "forcePathStyle": True,
        "credentialsSecret": "s3-creds",
    }
    docs = render({"api": {**VALUES["api"], "storage": {"s3": s3}}})
    config = tmp_path / "config.yaml"
    config.write_text(named(docs, "ConfigMap")["data"]["config.yaml"])
    args = argparse.Namespace(config=str(config), storage_root=str(tmp_path), keys_namespace=NAMESPACE)
    files = settings_from(args).files
    assert isinstance(files, S3FileStore) and (files.bucket, files.prefix) == ("team-files", "kubetune")
    assert files.job_spec() == {
        "s3": {
            "endpoint": "http://minio.storage.svc:9000",
            "region": "us-east-1",
            "forcePathStyle": True,
            "credentialsSecretRef": {"name": "s3-creds"},
        }
    }
    (container,) = named(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["AWS_ACCESS_KEY_ID"] == {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}
    assert env["AWS_SESSION_TOKEN"]["optional"] is True
    # without s3 values the files stay on the volume
    plain = tmp_path / "plain.yaml"
    plain.write_text(named(render(VALUES), "ConfigMap")["data"]["config.yaml"])
    assert "filesS3" not in yaml.safe_load(plain.read_text())
