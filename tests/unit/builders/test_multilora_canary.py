"""Multi-LoRA serving (spec.adapters) and canary promotion (spec.promotion.canary): decisions and manifests."""

from __future__ import annotations

import json

import pytest

from kubetune import constants as c
from kubetune.api import FineTuneJob, ModelDeployment
from kubetune.api.admission import admit_resource
from kubetune.api.evaluation import Evaluation
from kubetune.builders import adapters, canary, serving
from kubetune.builders.promotion import Decision, decide
from kubetune.errors import SpecError
from kubetune.status import modeldeployment as md_status

BASE = "hf://Qwen/Qwen2.5-0.5B-Instruct"
NOW = "2026-01-01T00:00:00Z"


def job(name: str, steps=(200, 400), adapter="lora", r=16, base=BASE) -> FineTuneJob:
    claim = f"{name}-data"
    return FineTuneJob.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": f"j-{name}"},
            "spec": {
                "baseModel": {"uri": base},
                "dataset": {"train": {"uri": "t.jsonl"}},
                "adapter": {"type": adapter, "r": r},
            },
            "status": {
                "phase": "Succeeded",
                "checkpoints": [
                    {"name": f"checkpoint-{s}", "step": s, "uri": f"pvc://{claim}/output/checkpoint-{s}"} for s in steps
                ],
                "bestCheckpoint": f"checkpoint-{steps[-1]}",
            },
        }
    )


def md(status=None, generation=1, **spec) -> ModelDeployment:
    body = {
        "metadata": {"name": "travel", "namespace": "ns", "uid": "m-1", "generation": generation},
        "spec": {"model": {"uri": BASE}, **spec},
    }
    if status is not None:
        body["status"] = status
    return ModelDeployment.model_validate(body)


def adapter(name: str, job_name: str, pin: str = "") -> dict:
    return {"name": name, "fineTuneJob": {"name": job_name}, "promotion": {"pin": pin} if pin else {}}


def workload(deployment: ModelDeployment, jobs: dict[str, FineTuneJob], gpus: int = 0):
    """What the operator applies for `deployment`: (adapter ConfigMap, Deployment, outcomes)."""
    sources = [
        adapters.AdapterSource(i, a, jobs.get(a.fine_tune_job.name) if a.fine_tune_job else None)
        for i, a in enumerate(deployment.spec.adapters)
    ]
    base = decide(deployment, None, None)
    plan = serving.plan(deployment, base, None)
    outcomes = adapters.decide_adapters(deployment, sources, plan.served_uri, NOW)
    pool = adapters.adapter_pool(deployment, sources, outcomes)
    cm = adapters.build_config_map(deployment, adapters.adapter_set(outcomes))
    return cm, serving.build_deployment(deployment, plan, None, pool=pool), outcomes


def served_set(cm: dict) -> dict[str, str]:
    return {a["name"]: a["path"] for a in json.loads(cm["data"]["adapters.json"])["adapters"]}


def test_promoting_one_adapter_changes_only_the_adapter_configmap_never_the_pod_template():
    jobs = {"fr": job("fr"), "de": job("de")}
    first = md(adapters=[adapter("travel-fr", "fr", pin="checkpoint-200"), adapter("travel-de", "de")])
    cm1, dep1, outcomes = workload(first, jobs)
    assert served_set(cm1) == {
        "travel-de": "/mnt/pvc/de-data/output/checkpoint-400",
        "travel-fr": "/mnt/pvc/fr-data/output/checkpoint-200",
    }
    status = {"adapters": [o.status.to_k8s() for o in outcomes]}
    # Unpin one adapter: it rolls forward to its best; the other stays; the Deployment is byte-for-byte the same.
    # (A spec edit moves metadata.generation: the template must not depend on it either.)
    second = md(status=status, generation=2, adapters=[adapter("travel-fr", "fr"), adapter("travel-de", "de")])
    cm2, dep2, outcomes2 = workload(second, jobs)
    assert served_set(cm2)["travel-fr"] == "/mnt/pvc/fr-data/output/checkpoint-400"
    assert served_set(cm2)["travel-de"] == served_set(cm1)["travel-de"]
    assert dep2 == dep1
    fr = next(o for o in outcomes2 if o.name == "travel-fr")
    assert fr.decision.kind == "rollforward"
    assert [r.checkpoint for r in fr.status.revisions] == ["checkpoint-200", "checkpoint-400"]
    de = next(o for o in outcomes2 if o.name == "travel-de")
    assert de.decision.kind == "none" and len(de.status.revisions) == 1

    # Rolling one adapter back by its pin: a rollback of that adapter alone.
    status2 = {"adapters": [o.status.to_k8s() for o in outcomes2]}
    third = md(
        status=status2,
        generation=3,
        adapters=[adapter("travel-fr", "fr", pin="checkpoint-200"), adapter("travel-de", "de")],
    )
    _, dep3, outcomes3 = workload(third, jobs)
    fr3 = next(o for o in outcomes3 if o.name == "travel-fr")
    assert fr3.decision.kind == "rollback"
    assert fr3.status.revisions[-1].reason == "pinned to checkpoint-200 (rollback from checkpoint-400)"
    assert dep3 == dep1


def test_the_pod_mounts_the_adapter_set_and_runs_the_sync_sidecar_with_every_adapter_claim():
    jobs = {"fr": job("fr"), "de": job("de")}
    _, dep, _ = workload(md(adapters=[adapter("travel-fr", "fr"), adapter("travel-de", "de")]), jobs)
    pod = dep["spec"]["template"]["spec"]
    server, sync = pod["containers"]
    assert server["command"][-1] == "--enable-lora"  # the built-in server's runtime adapter API
    assert sync["name"] == "adapters-sync"
    assert sync["command"][:2] == ["kubetune-trainer", "serve-adapters-sync"]
    assert sync["volumeMounts"] == [{"name": "adapters", "mountPath": "/etc/kubetune/adapters", "readOnly": True}]
    assert "subPath" not in json.dumps(sync["volumeMounts"])  # kubelet refreshes only whole-directory mounts
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"fr-data", "de-data"}
    assert {"name": "adapters", "configMap": {"name": "travel-serve-adapters"}} in pod["volumes"]


def test_vllm_serves_the_base_with_runtime_lora_loading_sized_by_the_adapter_pool():
    jobs = {"fr": job("fr", r=24), "de": job("de", r=8)}
    deployment = md(adapters=[adapter("travel-fr", "fr"), adapter("travel-de", "de")], resources={"gpus": 1})
    _, dep, _ = workload(deployment, jobs)
    server = dep["spec"]["template"]["spec"]["containers"][0]
    args = server["args"]
    assert args[args.index("--model") + 1] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert args[args.index("--served-model-name") + 1] == "travel"
    assert "--enable-lora" in args and "--lora-modules" not in args
    assert args[args.index("--max-loras") + 1] == "2"
    assert args[args.index("--max-cpu-loras") + 1] == "2"
    assert args[args.index("--max-lora-rank") + 1] == "32"  # the largest rank, rounded up to one vLLM accepts
    assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"} in server["env"]
    assert "initContainers" not in dep["spec"]["template"]["spec"]  # the base is not merged with anything


def test_an_adapter_that_does_not_fit_the_base_is_left_out_with_its_field_path():
    jobs = {
        "full": job("full", adapter="none"),
        "other": job("other", base="hf://meta-llama/Llama-3.2-1B"),
        "ok": job("ok"),
    }
    deployment = md(adapters=[adapter("a", "ok"), adapter("b", "full"), adapter("c", "other")])
    cm, _, outcomes = workload(deployment, jobs)
    assert set(served_set(cm)) == {"a"}
    errors = {o.name: o.error for o in outcomes}
    assert errors["a"] is None
    assert errors["b"].startswith("spec.adapters[1].fineTuneJob: FineTuneJob 'full' is a full fine-tune")
    assert errors["c"].startswith("spec.adapters[2].fineTuneJob: FineTuneJob 'other' was trained on hf://meta-llama")
    assert f"this deployment serves {BASE}" in errors["c"]


def test_only_adapters_that_can_be_served_shape_the_pods():
    """T3 D8: an incompatible adapter or one whose FineTuneJob does not exist neither raises --max-loras nor mounts
    another team's claim into the serving pods."""
    jobs = {"full": job("full", adapter="none"), "other": job("other", base="hf://meta-llama/Llama-3.2-1B", r=64)}
    jobs["ok"] = job("ok")
    deployment = md(
        adapters=[adapter("a", "ok"), adapter("b", "full"), adapter("c", "other"), adapter("ghost", "does-not-exist")],
        resources={"gpus": 1},
    )
    _, dep, _ = workload(deployment, jobs)
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in dep["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"ok-data"}
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-loras") + 1] == "1" and args[args.index("--max-lora-rank") + 1] == "16"


def test_with_adapters_a_lora_job_as_spec_model_is_refused_with_what_to_do():
    deployment = md(model={"fineTuneJob": {"name": "fr"}}, adapters=[adapter("de", "de")])
    decision = Decision("promote", "checkpoint-400", "pvc://fr-data/output/checkpoint-400", "Promoted", "x")
    with pytest.raises(SpecError, match=r"spec.model: FineTuneJob 'fr' trains a LoRA adapter.*spec.adapters"):
        serving.plan(deployment, decision, job("fr"))


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"adapters": [adapter("a", "x"), adapter("a", "y")]}, "spec.adapters"),
        ({"adapters": [adapter("a", "x"), adapter("b", "y")]}, None),
        ({"servedModelName": "a", "adapters": [adapter("a", "x")]}, "spec.adapters"),
        (
            {"adapters": [{"name": "a", "fineTuneJob": {"name": "x"}, "promotion": {"canary": {"weight": 5}}}]},
            "spec.adapters[0].promotion.canary",
        ),
        ({"adapters": [{"name": "a", "fineTuneJob": {"name": "x"}, "uri": BASE}]}, "spec.adapters[0]"),
    ],
)
def test_admission_of_adapters(spec, path):
    doc = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "travel", "namespace": "ns"},
        "spec": {"model": {"uri": BASE}, **spec},
    }
    found = admit_resource(doc)  # the one admission: the model (unique names), CEL rules, spec checks
    paths = [e.path for e in found] if found else []
    assert (path in paths) if path else not found, found


# --- canary ---

CLAIM = "pvc://travel-data/output"


def evaluation(results: dict[str, bool]) -> Evaluation:
    return Evaluation.model_validate(
        {
            "metadata": {"name": "travel-eval", "namespace": "ns"},
            "spec": {
                "model": {"fineTuneJob": {"name": "travel"}},
                "dataset": {"uri": "t.jsonl"},
                "metrics": ["exact_match"],
            },
            "status": {
                "results": [
                    {
                        "model": m,
                        "uri": f"{CLAIM}/{m}",
                        "metrics": {"exact_match": (0.8 + int(m.split("-")[1]) / 10000) if p else 0.1},
                        "passed": p,
                    }
                    for m, p in results.items()
                ]
            },
        }
    )


def canary_md(weight: int | None, canary_checkpoint: str | None = None, gateway: bool = False, replicas: int = 4):
    status = {
        "servedCheckpoint": "checkpoint-200",
        "servedUri": f"{CLAIM}/checkpoint-200",
        "revisions": [{"revision": 1, "checkpoint": "checkpoint-200", "reason": "x"}],
    }
    if canary_checkpoint:
        status["traffic"] = [
            {"track": "stable", "checkpoint": "checkpoint-200", "weight": 80},
            {"track": "canary", "checkpoint": canary_checkpoint, "weight": 20},
        ]
    promotion = {"evaluation": {"name": "travel-eval"}}
    if weight is not None:
        promotion["canary"] = {"weight": weight}
    extra = {"gateway": {"name": "inference", "namespace": "gateways"}} if gateway else {}
    return md(status=status, model={"fineTuneJob": {"name": "travel"}}, promotion=promotion, replicas=replicas, **extra)


def split(deployment: ModelDeployment, results: dict[str, bool]) -> canary.Split:
    ev = evaluation(results)
    return canary.split(deployment, decide(deployment, ev, None), ev)


def test_a_roll_forward_goes_to_the_canary_at_the_spec_weight_while_stable_keeps_serving():
    s = split(canary_md(20), {"checkpoint-200": True, "checkpoint-400": True})
    assert s.stable.kind == "none" and s.stable.checkpoint == "checkpoint-200"
    assert s.canary is not None and (s.canary.checkpoint, s.canary.weight) == ("checkpoint-400", 20)
    assert s.event is not None and s.event[1] == "CanaryStarted"
    assert s.stable.message.startswith("canary checkpoint-400 at 20%")


def test_weight_100_promotes_the_canary_to_stable():
    s = split(canary_md(100, "checkpoint-400"), {"checkpoint-200": True, "checkpoint-400": True})
    assert s.stable.kind == "rollforward" and s.stable.checkpoint == "checkpoint-400" and s.canary is None
    assert s.stable.message.endswith("(canary weight 100)")


def test_weight_0_rolls_the_canary_back_and_the_candidate_waits():
    s = split(canary_md(0, "checkpoint-400"), {"checkpoint-200": True, "checkpoint-400": True})
    assert s.stable.kind == "none" and s.stable.checkpoint == "checkpoint-200" and s.canary is None
    assert s.event == (
        "Warning",
        "CanaryRolledBack",
        "canary checkpoint-400 removed: spec.promotion.canary.weight is 0; checkpoint-200 serves all requests",
    )
    assert "checkpoint-400 waits for spec.promotion.canary.weight above 0" in s.stable.message


def test_a_canary_that_fails_its_evaluation_is_rolled_back_automatically():
    s = split(canary_md(20, "checkpoint-400"), {"checkpoint-200": True, "checkpoint-400": False})
    assert s.canary is None and s.stable.checkpoint == "checkpoint-200"
    assert s.event is not None and s.event[:2] == ("Warning", "CanaryRolledBack")
    assert "canary checkpoint-400 removed: it failed Evaluation travel-eval" in s.event[2]


def test_a_pin_goes_straight_to_stable_even_with_a_canary_configured():
    deployment = canary_md(20)
    pinned = deployment.model_copy(
        update={
            "spec": deployment.spec.model_copy(
                update={"promotion": deployment.spec.promotion.model_copy(update={"pin": "checkpoint-400"})}
            )
        }
    )
    s = split(pinned, {"checkpoint-200": True, "checkpoint-400": True})
    assert s.stable.kind == "pin" and s.canary is None


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [(4, 25, (3, 1)), (10, 30, (7, 3)), (4, 5, (3, 1)), (4, 95, (1, 3)), (1, 50, (1, 1)), (0, 50, (0, 0))],
)
def test_replica_proportion(total, weight, expected):
    assert canary.replica_split(total, weight) == expected


def test_canary_deployment_and_services_split_by_replicas_without_a_gateway():
    deployment = canary_md(25)
    s = split(deployment, {"checkpoint-200": True, "checkpoint-400": True})
    assert s.canary is not None
    plan = serving.plan(deployment, s.canary.decision(), None)
    dep = serving.build_deployment(deployment, plan, None, track="canary", replicas=1)
    assert dep["metadata"]["name"] == "travel-serve-canary"
    assert dep["spec"]["selector"]["matchLabels"] == {c.LABEL_DEPLOYMENT: "travel", c.LABEL_ROLE: "serve-canary"}
    assert dep["spec"]["template"]["metadata"]["annotations"]["kubetune.dev/checkpoint"] == "checkpoint-400"
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert {"name": "run-config", "configMap": {"name": "travel-serve-canary-config"}} in volumes
    stable_selector = serving.build_deployment(deployment, serving.plan(deployment, s.stable, None), None)["spec"][
        "selector"
    ]
    assert stable_selector["matchLabels"][c.LABEL_ROLE] == "serve"  # the two Deployments never select each other's pods
    # One Service over both tracks: requests split as the replicas are.
    assert serving.build_service(deployment, both_tracks=True)["spec"]["selector"] == {c.LABEL_DEPLOYMENT: "travel"}
    traffic = canary.traffic(deployment, s.stable, s.canary, 1, routed=False)
    assert [(t["track"], t["checkpoint"], t["weight"]) for t in traffic] == [
        ("stable", "checkpoint-200", 75),
        ("canary", "checkpoint-400", 25),
    ]


def test_httproute_carries_the_canary_weight_as_backend_weights():
    deployment = canary_md(10, gateway=True)
    s = split(deployment, {"checkpoint-200": True, "checkpoint-400": True})
    route = canary.build_httproute(deployment, "travel", "travel", "travel-serve-canary", s.canary)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference", "namespace": "gateways"}
    ]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "travel", "port": 8000, "weight": 90},
        {"name": "travel-serve-canary", "port": 8000, "weight": 10},
    ]
    traffic = canary.traffic(deployment, s.stable, s.canary, 1, routed=True)
    assert [t["weight"] for t in traffic] == [90, 10]


def test_two_deployments_on_one_gateway_are_told_apart_by_hostname_and_path_prefix():
    """T3 D2: without a match of its own every route is PathPrefix / on the listener and the older one gets it all."""
    gateway = {"name": "inference", "namespace": "gateways", "hostnames": ["llm.example.com"]}
    bot = md(gateway={**gateway, "pathPrefix": "/team-a/bot"})
    support = md(gateway={**gateway, "pathPrefix": "/team-a/support"})
    routes = [canary.build_httproute(d, "r", "r", "r-canary", None)["spec"] for d in (bot, support)]
    assert routes[0]["hostnames"] == ["llm.example.com"]
    assert [r["rules"][0]["matches"] for r in routes] == [
        [{"path": {"type": "PathPrefix", "value": "/team-a/bot"}}],
        [{"path": {"type": "PathPrefix", "value": "/team-a/support"}}],
    ]
    # the server answers /v1/...: /team-a/bot/v1/chat/completions reaches it as /v1/chat/completions
    assert routes[0]["rules"][0]["filters"] == [
        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}
    ]
    plain = canary.build_httproute(md(gateway={"name": "inference"}), "r", "r", "r-canary", None)["spec"]
    assert "hostnames" not in plain and "filters" not in plain["rules"][0]


@pytest.mark.parametrize("bad", [{"pathPrefix": "team-a"}, {"pathPrefix": "/a/"}, {"hostnames": ["LLM.example.com"]}])
def test_gateway_match_fields_are_validated(bad):
    with pytest.raises(ValueError, match="gateway"):
        md(gateway={"name": "inference", **bad})


def test_adapter_uris_the_runtime_cannot_load_are_left_out_saying_which_schemes_work():
    """T3 D9: an s3:// adapter went into adapters.json as written; an hf://...@revision lost its revision."""
    deployment = md(
        adapters=[
            {"name": "s3", "uri": "s3://bucket/adapter"},
            {"name": "rev", "uri": "hf://org/adapter@v2"},
            {"name": "ok", "uri": "hf://org/adapter"},
        ]
    )
    cm, _, outcomes = workload(deployment, {})
    assert served_set(cm) == {"ok": "org/adapter"}
    errors = {o.name: o.error or "" for o in outcomes}
    assert (
        errors["s3"].startswith("spec.adapters[0].uri: s3://bucket/adapter cannot be loaded")
        and "pvc://" in errors["s3"]
    )
    assert errors["rev"].startswith("spec.adapters[1].uri: hf://org/adapter@v2")


def test_an_adapter_pinned_to_a_missing_checkpoint_names_the_adapters_field_path():
    """T3 D10: the message said spec.promotion.pin, the deployment's own field."""
    deployment = md(adapters=[adapter("fr", "fr"), adapter("de", "de", pin="checkpoint-999")])
    _, _, outcomes = workload(deployment, {"fr": job("fr"), "de": job("de")})
    message = outcomes[1].decision.message
    assert "spec.adapters[1].promotion.pin 'checkpoint-999'" in message and "spec.promotion" not in message


def test_canary_started_says_the_share_replicas_give_without_a_gateway():
    deployment = canary_md(10, replicas=4)
    ev = evaluation({"checkpoint-200": True, "checkpoint-400": True})
    s = canary.split(deployment, decide(deployment, ev, None), ev, routed=False)
    assert s.event is not None and s.event[1] == "CanaryStarted"
    assert "canary checkpoint-400 at 25%" in s.event[2] and "at 10%" not in s.event[2]  # 1 of 4 replicas
    assert "spec.promotion.canary.weight 10%" in s.event[2]


PARENT = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference", "namespace": "gateways"}


def _route(parents: list | None) -> dict:
    body = {"metadata": {"name": "travel", "namespace": "ns"}, "spec": {"parentRefs": [PARENT]}}
    if parents is not None:
        body["status"] = {"parents": parents}
    return body


def _parent_status(accepted: str, resolved: str = "True") -> dict:
    return {
        "parentRef": {"name": "inference", "namespace": "gateways"},
        "controllerName": "example.net/gateway",
        "conditions": [
            {"type": "Accepted", "status": accepted, "reason": "NotAllowedByListeners", "message": "no listener"},
            {"type": "ResolvedRefs", "status": resolved, "reason": "ResolvedRefs", "message": ""},
        ],
    }


def test_httproute_weights_count_only_once_the_gateway_accepted_the_route():
    assert "not accepted by Gateway gateways/inference" in (canary.route_pending(_route(None), PARENT) or "")
    refused = canary.route_pending(_route([_parent_status("False")]), PARENT) or ""
    assert "not Accepted by Gateway gateways/inference (NotAllowedByListeners: no listener)" in refused
    assert canary.route_pending(_route([_parent_status("True")]), PARENT) is None
    assert canary.route_pending(_route([_parent_status("True", resolved="False")]), PARENT) is not None

    deployment = canary_md(20, gateway=True)
    s = split(deployment, {"checkpoint-200": True, "checkpoint-400": True})
    patch = md_status.with_serving_extras(deployment, {"message": "m"}, s, [], [], True, refused)
    assert [t["weight"] for t in patch["traffic"]] == [80, 20]
    assert "not Accepted" in patch["message"] and "weights are not in effect yet" in patch["message"]


def test_while_deploying_the_message_keeps_a_checkpoint_waiting_for_the_canary_weight():
    s = split(canary_md(0, "checkpoint-400"), {"checkpoint-200": True, "checkpoint-400": True})
    rolling = {"observedGeneration": 1, "updatedReplicas": 4, "readyReplicas": 0}
    apps = {"metadata": {"generation": 1}, "spec": {"replicas": 4}, "status": rolling}
    patch = md_status.compute_status(canary_md(0, "checkpoint-400"), s.stable, apps, [], NOW)
    assert patch["phase"] == "Deploying", patch
    assert "checkpoint-400 waits for spec.promotion.canary.weight above 0" in patch["message"]
