"""`helm template` of the chart: what it installs, checked as the API server's types would read it."""

from __future__ import annotations

from typing import Any

import pytest
from chart_render import NAMESPACE, RELEASE, Render, RenderError, by_kind, lint_errors, one

from kubetune import constants as c

# The kubernetes client's model of each built-in kind the chart renders.
MODELS = {
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "V1CustomResourceDefinition",
}
FULLNAME = f"{RELEASE}-kubetune"


def _dropped(original: Any, back: Any, path: str) -> list[str]:
    """Paths present in `original` that the typed round trip lost: fields the type does not have."""
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [path]
        return [p for k, v in original.items() for p in _dropped(v, back.get(k), f"{path}.{k}")]
    if isinstance(original, list):
        if not isinstance(back, list) or len(back) != len(original):
            return [path]
        return [p for i, (o, b) in enumerate(zip(original, back, strict=True)) for p in _dropped(o, b, f"{path}[{i}]")]
    return [] if original is None or back is not None else [path]


def strict_roundtrip(doc: dict[str, Any]) -> list[str]:
    """Deserialise into the kubernetes client's model and back; report every field the model does not know."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    model_name = MODELS[(doc["apiVersion"], doc["kind"])]
    model = api._ApiClient__deserialize(doc, model_name)  # the client's own JSON -> model path
    back = api.sanitize_for_serialization(model)
    return _dropped(doc, back, f"{doc['kind']}/{doc['metadata']['name']}")


def test_chart_lints_clean(render: Render):
    assert lint_errors() == []


def test_default_install_renders_these_objects(render: Render):
    docs = render()
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted(
        [
            ("CustomResourceDefinition", "evaluations.kubetune.dev"),
            ("CustomResourceDefinition", "finetunejobs.kubetune.dev"),
            ("CustomResourceDefinition", "modeldeployments.kubetune.dev"),
            ("ServiceAccount", FULLNAME),
            ("ClusterRole", FULLNAME),
            ("ClusterRoleBinding", FULLNAME),
            ("ClusterRole", f"{FULLNAME}-edit"),
            ("ClusterRole", f"{FULLNAME}-view"),
            ("Deployment", FULLNAME),
            ("Service", f"{FULLNAME}-metrics"),
        ]
    )
    namespaced = [d for d in docs if d["kind"] in ("ServiceAccount", "Deployment", "Service")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {NAMESPACE}


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watchNamespaces": ["team-a", "team-b"], "prometheus": {"servicemonitor": {"enabled": True}}},
        {
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
            "extraEnv": [{"name": "KUBETUNE_X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "priorityClassName": "system-cluster-critical",
            "podAnnotations": {"a": "b"},
            "imagePullSecrets": [{"name": "regcred"}],
            "serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "x@y.iam"}},
        },
    ],
    ids=["defaults", "namespaced+servicemonitor", "scheduling-overrides"],
)
def test_every_object_is_a_valid_kubernetes_object(render: Render, values: dict[str, Any]):
    docs = render(values)
    typed = [d for d in docs if (d["apiVersion"], d["kind"]) in MODELS]
    assert len(typed) == len(docs) - len(by_kind(docs, "ServiceMonitor"))
    assert [p for d in typed for p in strict_roundtrip(d)] == []
    for doc in docs:
        name = doc["metadata"]["name"]
        assert len(name) <= 63 or doc["kind"] == "CustomResourceDefinition", name


def test_operator_deployment_is_one_replica_recreate_restricted(render: Render):
    dep = one(render(), "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/kubetune/operator:0.1.0"  # the tag defaults to appVersion
    assert container["command"] == ["kubetune"]
    assert container["args"] == ["operator", "--all-namespaces", "--liveness=http://0.0.0.0:8081/healthz"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http-metrics": c.METRICS_PORT, "http-healthz": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-healthz"}
    assert pod["serviceAccountName"] == one(render(), "ServiceAccount")["metadata"]["name"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_operator_settings_reach_the_operator_through_its_env(render: Render):
    """The env the chart sets, read by the operator's own settings code, gives the values that were set."""
    pytest.importorskip("kopf", reason="the operator extra (kopf) is not installed")
    from kubetune.controllers.config import OperatorConfig

    dep = one(
        render(
            {
                "trainer": {
                    "image": {"repository": "registry.local/trainer", "tag": "dev", "pullPolicy": "Always"},
                    "progressIntervalSeconds": 2.5,
                },
                "serving": {
                    "vllm": {"image": "registry.local/vllm:1"},
                    "mergeAdapters": False,
                    "startupTimeoutSeconds": 600,
                },
                "reconcile": {"resyncSeconds": 30, "sourcePollSeconds": 5},
                "storage": {"defaultStorageClass": "fast-ssd"},
                "metrics": {"port": 9090},
                "image": {"digest": "sha256:" + "b" * 64},
            }
        ),
        "Deployment",
    )
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    cfg = OperatorConfig.from_env(env)
    assert cfg.pods.trainer_image == "registry.local/trainer:dev"
    assert cfg.pods.image_pull_policy == "Always"
    assert cfg.pods.storage_class_name == "fast-ssd"
    assert cfg.pods.progress_interval_seconds == 2.5
    assert cfg.metrics_port == 9090 == container["ports"][0]["containerPort"]
    serve = cfg.serving
    assert serve.vllm_image == "registry.local/vllm:1" and serve.merge_adapters is False
    assert serve.startup_timeout_seconds == 600
    assert (cfg.resync_seconds, cfg.source_poll_seconds) == (30, 5)
    assert container["image"] == "ghcr.io/kubetune/operator@sha256:" + "b" * 64

    (default,) = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"]
    cfg = OperatorConfig.from_env({e["name"]: e["value"] for e in default["env"]})
    assert cfg.pods.trainer_image == "ghcr.io/kubetune/trainer:0.1.0"  # the tag defaults to appVersion
    assert cfg.pods.storage_class_name is None  # "": the cluster's default StorageClass
    default_serving = cfg.serving
    assert default_serving.merge_adapters is True
    assert default_serving.vllm_image == type(default_serving)().vllm_image  # the chart's default is the operator's
    assert cfg == OperatorConfig()  # every chart default is the operator's own default


def test_governance_values_reach_the_operator(render: Render):
    """governance.* in values become the labels, annotations and prefixes every child object gets."""
    pytest.importorskip("kopf", reason="the operator extra (kopf) is not installed")
    from kubetune.controllers.config import OperatorConfig

    values = {
        "governance": {
            "defaultLabels": {"cost-center": "ml-42", "kueue.x-k8s.io/priority-class": "batch-low"},
            "defaultAnnotations": {"example.com/owner": "platform"},
            "propagateAnnotationPrefixes": ["finops.example.com/", "propagate.kubetune.dev/"],
        }
    }
    (container,) = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"]
    cfg = OperatorConfig.from_env({e["name"]: e["value"] for e in container["env"]})
    assert cfg.propagation.default_labels == values["governance"]["defaultLabels"]
    assert cfg.propagation.default_annotations == {"example.com/owner": "platform"}
    assert cfg.propagation.annotation_prefixes == ("finops.example.com/", "propagate.kubetune.dev/")
    (none,) = one(render({"governance": {"propagateAnnotationPrefixes": []}}), "Deployment")["spec"]["template"][
        "spec"
    ]["containers"]
    assert OperatorConfig.from_env({e["name"]: e["value"] for e in none["env"]}).propagation.annotation_prefixes == ()


def test_the_chart_sets_exactly_the_variables_the_operator_reads(render: Render):
    """No variable the operator ignores (a misspelt name), none it reads that the chart cannot set."""
    pytest.importorskip("kopf", reason="the operator extra (kopf) is not installed")
    from kubetune.controllers.config import OperatorConfig

    class Recording(dict):
        read: set[str] = set()

        def get(self, key, default=None):
            self.read.add(key)
            return super().get(key, default)

    (container,) = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"]
    env = Recording({e["name"]: e["value"] for e in container["env"]})
    OperatorConfig.from_env(env)
    assert set(env) == env.read


def test_unknown_values_are_refused_at_render_time(render: Render):
    with pytest.raises(RenderError, match="replicaCount"):
        render({"replicaCount": 2})


# --- RBAC ---------------------------------------------------------------------------------------------


def allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str | None = None) -> bool:
    for rule in rules:
        matches = group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
        if (
            matches
            and verb in rule.get("verbs", [])
            and (not rule.get("resourceNames") or name in rule["resourceNames"])
        ):
            return True
    return False


def operator_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return next(d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"] == FULLNAME)["rules"]


def test_operator_clusterrole_is_least_privilege(render: Render):
    rules = operator_rules(render())
    everything = [
        (g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    ]
    assert not [t for t in everything if "*" in t], "no wildcards"
    assert not [t for t in everything if t[2] in ("escalate", "bind", "impersonate")]
    assert not [
        t for t in everything if t[1] in ("secrets", "nodes", "namespaces", "clusterroles", "clusterrolebindings")
    ]
    for kind in ("finetunejobs", "evaluations", "modeldeployments"):
        assert allows(rules, c.GROUP, kind, "watch") and allows(rules, c.GROUP, f"{kind}/status", "patch")
        assert not allows(rules, c.GROUP, kind, "create") and not allows(rules, c.GROUP, kind, "delete")
    assert not allows(rules, "", "pods/log", "get") and not allows(rules, "", "pods", "create")  # logs: never read
    assert not allows(rules, "", "configmaps", "list") and not allows(rules, "", "configmaps", "watch")
    assert allows(rules, "apiextensions.k8s.io", "customresourcedefinitions", "list")
    assert not allows(rules, "apiextensions.k8s.io", "customresourcedefinitions", "create")
    for group in ("", "events.k8s.io"):
        assert allows(rules, group, "events", "create")


# What the operator calls: kubetune.k8s from the controllers (get/create/patch/delete/list, status patches,
# Events) and Kopf itself (lists and watches the kinds with handlers, patches annotations and finalizers of
# the three kinds, reads CRDs, posts Events). (group, resource, verb).
SERVING_EXTRAS = [
    ("networking.k8s.io", "networkpolicies"),
    ("keda.sh", "scaledobjects"),
    ("monitoring.coreos.com", "podmonitors"),
]
OPERATOR_CALLS = [
    *[
        (c.GROUP, plural, verb)
        for plural in ("finetunejobs", "evaluations", "modeldeployments")
        for verb in ("get", "list", "watch", "patch")
    ],
    *[(c.GROUP, f"{plural}/status", "patch") for plural in ("finetunejobs", "evaluations", "modeldeployments")],
    *[("batch", "jobs", verb) for verb in ("get", "list", "watch", "create", "patch", "delete")],
    *[("jobset.x-k8s.io", "jobsets", verb) for verb in ("get", "list", "watch", "create", "patch", "delete")],
    *[("", "pods", verb) for verb in ("list", "watch")],
    # PVCs: list and watch of those kept after their FineTuneJob (controllers.retention), patch to keep one.
    *[("", "persistentvolumeclaims", verb) for verb in ("get", "list", "watch", "create", "patch", "delete")],
    *[("", "configmaps", verb) for verb in ("get", "create", "patch", "delete")],
    *[("", "services", verb) for verb in ("get", "create")],
    *[("", "serviceaccounts", verb) for verb in ("get", "create")],
    *[("rbac.authorization.k8s.io", kind, verb) for kind in ("roles", "rolebindings") for verb in ("get", "create")],
    *[("apps", "deployments", verb) for verb in ("get", "list", "watch", "create", "patch")],
    *[("autoscaling", "horizontalpodautoscalers", verb) for verb in ("get", "create", "patch", "delete")],
    # A ModelDeployment's NetworkPolicy, KEDA ScaledObject and PodMonitor (controllers.serving_extras).
    *[(group, plural, verb) for group, plural in SERVING_EXTRAS for verb in ("get", "create", "patch", "delete")],
    # A canary: its Deployment and Service go when it ends; traffic split by an HTTPRoute (spec.gateway).
    ("apps", "deployments", "delete"),
    ("", "services", "delete"),
    *[("gateway.networking.k8s.io", "httproutes", verb) for verb in ("get", "create", "patch", "delete")],
    ("", "events", "create"),
]


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}], ids=["cluster-wide", "namespaced"])
def test_operator_rbac_allows_every_call_the_operator_makes(render: Render, values: dict[str, Any]):
    docs = render(values)
    rules = operator_rules(docs) + [rule for role in by_kind(docs, "Role") for rule in role["rules"]]
    assert [call for call in OPERATOR_CALLS if not allows(rules, *call)] == []
    assert allows(operator_rules(docs), "apiextensions.k8s.io", "customresourcedefinitions", "watch")


def test_operator_can_create_every_child_the_builders_make(render: Render):
    """Each object the builders return can be created, and each per-run Role grants only what the operator
    holds itself (which is why it needs neither `escalate` nor `bind`)."""
    from kubetune.api import Evaluation, FineTuneJob
    from kubetune.builders import evaluation, rbac, storage, training

    job = FineTuneJob.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "team", "uid": "u-1"},
            "spec": {
                "baseModel": {"uri": "hf://org/m"},
                "dataset": {"train": {"uri": "pvc://d/t.jsonl"}},
                "resources": {"nodes": 2},
            },
        }
    )
    ev = Evaluation.model_validate(
        {
            "metadata": {"name": "travel-eval", "namespace": "team", "uid": "u-2"},
            "spec": {
                "model": {"fineTuneJob": {"name": "travel"}},
                "dataset": {"uri": "pvc://d/test.jsonl"},
                "metrics": ["exact_match"],
            },
        }
    )
    children = [
        storage.build_pvc(job),
        training.build_run_config_map(job, training.job_run_config(job)),
        *rbac.build_rbac(job),
        training.build_training_job(job),
        training.build_headless_service(job),
        *evaluation.build_rbac(ev),
    ]
    rules = operator_rules(render())
    plural = {"PersistentVolumeClaim": "persistentvolumeclaims", "ConfigMap": "configmaps", "ServiceAccount": "serviceaccounts",
              "Role": "roles", "RoleBinding": "rolebindings", "Job": "jobs", "Service": "services"}  # fmt: skip
    for child in children:
        group = child["apiVersion"].rpartition("/")[0]
        assert allows(rules, group, plural[child["kind"]], "create"), child["kind"]
        for rule in child.get("rules", []):
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        assert allows(rules, g, r, v, *rule.get("resourceNames", [None])), (g, r, v)
    # ModelDeployment serving objects.
    for group, resource in (("apps", "deployments"), ("autoscaling", "horizontalpodautoscalers")):
        assert allows(rules, group, resource, "create") and allows(rules, group, resource, "patch")


def test_watch_namespaces_gives_roles_in_those_namespaces_only(render: Render):
    docs = render({"watchNamespaces": ["team-a", "team-b"]})
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--namespace=team-a" in container["args"] and "--namespace=team-b" in container["args"]
    assert "--all-namespaces" not in container["args"]
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")) == ["team-a", "team-b"]
    assert allows(roles[0]["rules"], "batch", "jobs", "create")
    cluster = [rule for rule in operator_rules(docs) if rule["apiGroups"] != [c.GROUP]]  # own kinds: see below
    assert cluster == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        },
        # Kopf lists and watches namespaces when given --namespace (without: a minute of retries per start).
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    ]
    for binding in by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]


def test_watch_namespaces_keeps_the_own_kinds_cluster_wide_so_a_namespace_deletion_completes(render: Render):
    """T2's D2: the namespace controller deletes the chart's Role in a namespace being deleted before the
    operator removed its finalizers; with its own kinds granted by the ClusterRole it still can. Everything
    else it touches (Jobs, PVCs, pods, RBAC, Deployments...) stays in the namespaced Roles."""
    docs = render({"watchNamespaces": ["team-a"]})
    cluster, (role,) = operator_rules(docs), by_kind(docs, "Role")
    for kind in ("finetunejobs", "evaluations", "modeldeployments"):
        for verb in ("get", "list", "watch", "patch", "update"):
            assert allows(cluster, c.GROUP, kind, verb), (kind, verb)
        assert allows(cluster, c.GROUP, f"{kind}/status", "patch")
        assert allows(cluster, c.GROUP, f"{kind}/finalizers", "update")
        assert not allows(cluster, c.GROUP, kind, "create") and not allows(cluster, c.GROUP, kind, "delete")
    assert {g for rule in cluster for g in rule["apiGroups"]} == {"apiextensions.k8s.io", "", c.GROUP}
    assert [rule["resources"] for rule in cluster if rule["apiGroups"] == [""]] == [["namespaces"]]
    assert all(c.GROUP not in rule["apiGroups"] for rule in role["rules"])  # granted once, cluster-wide
    assert allows(role["rules"], "", "persistentvolumeclaims", "delete")
    # Cluster-wide mode grants the same rules, once.
    everywhere = operator_rules(render())
    assert [r for r in everywhere if r["apiGroups"] == [c.GROUP]] == [r for r in cluster if r["apiGroups"] == [c.GROUP]]


# API groups Kopf reads itself, beyond the calls above: CustomResourceDefinitions (which resources it serves)
# and events.k8s.io Events (it posts to either Events API).
KOPF_GROUPS = {"apiextensions.k8s.io", "events.k8s.io"}


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}], ids=["cluster-wide", "namespaced"])
def test_operator_is_granted_no_api_group_it_never_calls(render: Render, values: dict[str, Any]):
    """A rule for a feature that does not exist (the Kueue Workloads read it once had) is a grant nobody uses."""
    docs = render(values)
    rules = operator_rules(docs) + [rule for role in by_kind(docs, "Role") for rule in role["rules"]]
    granted = {group for rule in rules for group in rule["apiGroups"]}
    assert granted - {group for group, _, _ in OPERATOR_CALLS} - KOPF_GROUPS == set()


def test_jobset_rule_and_setting_follow_their_toggle(render: Render):
    """On: the operator may manage JobSets and discovers them (KUBETUNE_JOBSET=auto); off: no rule, and the
    operator is told never to use JobSet, so it never makes a call the chart does not grant."""
    pytest.importorskip("kopf", reason="the operator extra (kopf) is not installed")
    from kubetune.controllers.config import OperatorConfig

    for enabled in (True, False):
        docs = render({"jobset": {"enabled": enabled}})
        for verb in ("get", "list", "watch", "create", "patch", "delete"):
            assert allows(operator_rules(docs), "jobset.x-k8s.io", "jobsets", verb) is enabled
        (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        assert OperatorConfig.from_env({e["name"]: e["value"] for e in container["env"]}).jobset_allowed is enabled
    namespaced = render({"watchNamespaces": ["team-a"]})
    assert allows(by_kind(namespaced, "Role")[0]["rules"], "jobset.x-k8s.io", "jobsets", "create")


def test_the_trainer_image_variant_picks_the_cuda_build(render: Render):
    pytest.importorskip("kopf", reason="the operator extra (kopf) is not installed")
    from kubetune.controllers.config import OperatorConfig

    def trainer_image(values):
        (container,) = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"]
        return OperatorConfig.from_env({e["name"]: e["value"] for e in container["env"]}).pods.trainer_image

    assert trainer_image({}) == "ghcr.io/kubetune/trainer:0.1.0"
    assert trainer_image({"trainer": {"image": {"variant": "cuda"}}}) == "ghcr.io/kubetune/trainer:0.1.0-cuda"
    assert (
        trainer_image({"trainer": {"image": {"variant": "cuda", "tag": "0.2.0"}}})
        == "ghcr.io/kubetune/trainer:0.2.0-cuda"
    )
    with pytest.raises(RenderError, match="variant"):
        render({"trainer": {"image": {"variant": "rocm"}}})


def test_user_roles_aggregate_into_the_builtin_roles(render: Render):
    roles = {r["metadata"]["name"]: r for r in by_kind(render(), "ClusterRole")}
    edit, view = roles[f"{FULLNAME}-edit"], roles[f"{FULLNAME}-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in view["metadata"]["labels"]
    for kind in ("finetunejobs", "evaluations", "modeldeployments"):
        for verb in ("create", "update", "patch", "delete", "get", "list", "watch"):
            assert allows(edit["rules"], c.GROUP, kind, verb)
        assert allows(view["rules"], c.GROUP, kind, "list") and not allows(view["rules"], c.GROUP, kind, "create")
        assert not allows(edit["rules"], c.GROUP, f"{kind}/status", "patch"), "status is the operator's"
    off = render({"rbac": {"aggregateClusterRoles": False, "create": False}})
    assert by_kind(off, "ClusterRole") == [] and by_kind(off, "ClusterRoleBinding") == []


# --- metrics ------------------------------------------------------------------------------------------


def test_metrics_service_selects_the_operator_pod(render: Render):
    docs = render()
    svc, dep = one(docs, "Service"), one(docs, "Deployment")
    assert svc["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert by_kind(docs, "ServiceMonitor") == []


def test_servicemonitor_toggle_scrapes_the_metrics_service(render: Render):
    docs = render(
        {"prometheus": {"servicemonitor": {"enabled": True, "labels": {"release": "prom"}, "interval": "30s"}}}
    )
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == svc["spec"]["ports"][0]["name"] and endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "30s"
    with pytest.raises(RenderError, match=r"metrics\.service\.enabled"):
        render({"prometheus": {"servicemonitor": {"enabled": True}}, "metrics": {"service": {"enabled": False}}})


def test_long_release_names_keep_every_name_within_63_characters(render: Render):
    docs = render({"fullnameOverride": "x" * 80})
    names = [d["metadata"]["name"] for d in docs if d["kind"] != "CustomResourceDefinition"]
    assert names and all(len(n) <= 63 and not n.endswith("-") for n in names)
    assert any(n.endswith("-metrics") for n in names) and any(n.endswith("-edit") for n in names)
