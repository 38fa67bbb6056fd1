"""The `kubetune` command: validate, crds, version, and the entry points it hands on to."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import yaml

from kubetune import cli, crdfiles
from kubetune.api import KINDS, crdgen, parse_resource
from kubetune.api.finetunejob import Method

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
HEADER = "apiVersion: kubetune.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: x}}\n"
JOB = HEADER.format(kind="FineTuneJob") + textwrap.dedent(
    """\
    spec:
      baseModel: {uri: hf://Qwen/Qwen2.5-0.5B-Instruct}
      dataset: {train: {uri: pvc://datasets/train.jsonl}}
    """
)


def run(capsys, *argv: str) -> tuple[int, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_examples_are_valid(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, out = run(capsys, "validate", "examples/")
    assert rc == 0, out
    assert "all valid" in out.splitlines()[-1]


def test_examples_cover_every_method_and_kind():
    methods, kinds = set(), set()
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            resource, errors = parse_resource(doc, str(path))
            assert errors == [] and resource is not None, path
            kinds.add(resource.kind)
            if resource.kind == "FineTuneJob":
                methods.add(resource.spec.method)
                if resource.spec.adapter.type == "qlora":
                    methods.add("qlora")
                if resource.spec.resources.nodes > 1:
                    methods.add("multinode")
                if resource.spec.base_model.from_job is not None:
                    methods.add("continual")
    assert kinds == set(KINDS)
    assert methods >= {*Method.__args__, "qlora", "multinode", "continual"}


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (JOB.replace("dataset:", "datasett:"), "spec.datasett: Extra inputs are not permitted"),
        (JOB + "  method: sftt\n", "spec.method: Input should be"),
        (JOB + "  hyperparameters: {learningRate: -0.1}\n", "spec.hyperparameters.learningRate: Input should be greater"),
        (
            JOB.replace("{uri: hf://Qwen/Qwen2.5-0.5B-Instruct}", "{uri: hf://a/b, fromJob: {name: v1}}"),
            "spec.baseModel: set exactly one of baseModel.uri or baseModel.fromJob",
        ),
        (
            HEADER.format(kind="ModelDeployment")
            + "spec:\n  model: {uri: hf://a/b}\n  autoscaling: {minReplicas: 3, maxReplicas: 1}\n",
            "spec.autoscaling.minReplicas: autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        ),
        (
            HEADER.format(kind="Evaluation")
            + "spec:\n  model: {uri: hf://a/b}\n  dataset: {uri: pvc://d/t.jsonl}\n  metrics: [exact_match, bleurt]\n",
            "spec.metrics[1]: Input should be",
        ),
        (
            HEADER.format(kind="Evaluation")
            + "spec:\n  model: {uri: hf://a/b}\n  dataset: {uri: pvc://d/t.jsonl}\n"
            + "  passCriteria: [{metric: bleu, min: 20}]\n",
            "spec.passCriteria: every passCriteria metric must also be listed in metrics",
        ),
        (JOB.replace("kind: FineTuneJob", "kind: FineTuneJobs"), "kind: unknown kind 'FineTuneJobs'"),
        ("spec:\n  a: b: c\n", "m.yaml:2: not valid YAML"),
    ],
    ids=["unknown-field", "bad-enum", "negative-lr", "both-sources", "min-gt-max", "unknown-metric",
         "criterion-metric", "unknown-kind", "yaml-syntax"],
)  # fmt: skip
def test_invalid_manifests_are_refused_naming_the_field(tmp_path, capsys, yaml_text, expected):
    path = write(tmp_path, yaml_text)
    rc, out = run(capsys, "validate", str(path))
    assert rc == 1
    assert f"{path}: {expected}" in out or f"{tmp_path}/{expected}" in out, out
    assert "error(s)" in out.splitlines()[-1]


def test_every_problem_of_a_document_is_reported_at_once(tmp_path, capsys):
    text = JOB.replace("{uri: hf://Qwen/Qwen2.5-0.5B-Instruct}", "{uri: hf://a/b, fromJob: {name: v1}}")
    rc, out = run(capsys, "validate", str(write(tmp_path, text + "  hyperparameters: {learningRate: 0}\n")))
    assert rc == 1
    assert "spec.hyperparameters.learningRate" in out and "spec.baseModel: set exactly one" in out


def test_documents_are_numbered_and_other_kinds_ignored(tmp_path, capsys):
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: hf-token}\nstringData: {token: x}\n"
    path = write(tmp_path, "---\n".join([secret, JOB, JOB + "  suspend: maybe\n"]))
    rc, out = run(capsys, "validate", str(path))
    assert rc == 1
    assert f"{path}#3: spec.suspend" in out and f"{path}#2" not in out
    assert "2 resource(s)" in out


def test_local_datasets_named_by_manifests_must_exist(tmp_path, capsys):
    text = JOB.replace("pvc://datasets/train.jsonl", "data/train.jsonl")
    rc, out = run(capsys, "validate", str(write(tmp_path, text)))
    assert rc == 1
    assert "spec.dataset.train.uri: data/train.jsonl does not exist" in out


def test_remote_uris_are_not_checked(tmp_path, capsys):
    rc, out = run(capsys, "validate", str(write(tmp_path, JOB)))
    assert rc == 0, out


def test_local_datasets_are_validated_once(tmp_path, capsys):
    if not hasattr(pytest.importorskip("kubetune.data"), "validate_file"):
        pytest.skip("kubetune.data.validate_file is not there yet")
    data = tmp_path / "data"
    data.mkdir()
    good = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
    (data / "train.jsonl").write_text(good * 12)
    text = JOB.replace("pvc://datasets/train.jsonl", "data/train.jsonl")
    write(tmp_path, text, "a.yaml")
    write(tmp_path, text.replace("name: x", "name: y"), "b.yaml")
    rc, out = run(capsys, "validate", str(tmp_path))
    assert rc == 0, out
    assert "1 dataset(s)" in out.splitlines()[-1]

    (data / "train.jsonl").write_text(good * 12 + "{not json\n" + good)
    rc, out = run(capsys, "validate", str(tmp_path))
    assert rc == 1
    assert f"{data / 'train.jsonl'}:13: " in out, out  # the file and the line, once for both manifests
    assert out.count(":13: ") == 1 and "1 error(s)" in out.splitlines()[-1]


@pytest.mark.parametrize("argv", [["validate", "/no/such/path"], ["validate"], ["nonsense"], []])
def test_usage_errors_exit_2(capsys, argv):
    try:
        rc = cli.main(argv)
    except SystemExit as exit_:  # argparse
        rc = exit_.code
    assert rc == 2


def test_folder_without_manifests_is_a_usage_error(tmp_path, capsys):
    rc, out = run(capsys, "validate", str(tmp_path))
    assert rc == 2 and "no *.yaml" in out


def test_crds_writes_and_checks(tmp_path, capsys):
    out_dir, chart = tmp_path / "crds", tmp_path / "chart"
    rc, out = run(capsys, "crds", "--out", str(out_dir), "--chart", str(chart))
    assert rc == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(crdfiles.file_name(d) for d in crdgen.crds())
    assert sorted(p.name for p in (chart / "templates" / "crds").iterdir()) == names
    assert run(capsys, "crds", "--out", str(out_dir), "--chart", str(chart), "--check")[0] == 0

    (out_dir / names[0]).write_text("# edited by hand\n")
    rc, out = run(capsys, "crds", "--out", str(out_dir), "--no-chart", "--check")
    assert rc == 1 and "run `make crds`" in out and names[0] in out


def test_committed_crds_are_current(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, out = run(capsys, "crds", "--chart", "helm/kubetune", "--check")
    assert rc == 0, out


@pytest.mark.parametrize(
    ("argv", "module", "passed"),
    [
        (["run", "examples/quickstart", "--runs-dir", "/tmp/r"], "kubetune.local.runner", ["examples/quickstart", "--runs-dir", "/tmp/r"]),
        (["operator", "--liveness", "http://0.0.0.0:8080/healthz"], "kubetune.controllers.main", ["--liveness", "http://0.0.0.0:8080/healthz"]),
        (["model", "init-tiny", "out", "--from-data", "a.jsonl", "--seed", "1"], "kubetune_trainer.tiny", ["out", "--from-data", "a.jsonl", "--seed", "1"]),
        (["run", "--help"], "kubetune.local.runner", ["--help"]),
    ],
)  # fmt: skip
def test_entry_points_hand_their_arguments_on(monkeypatch, argv, module, passed):
    seen = []
    fake = types.ModuleType(module)
    fake.main = lambda args: seen.append(args) or 7
    monkeypatch.setitem(sys.modules, module, fake)
    assert cli.main(argv) == 7
    assert seen == [passed]


def test_missing_entry_point_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kubetune.controllers.main", None)  # import fails
    rc, out = run(capsys, "operator")
    assert rc == 2 and "kubetune operator" in out


def test_version(capsys):
    rc, out = run(capsys, "version")
    assert rc == 0 and out.startswith("kubetune 0.")


def test_help_and_validate_work_without_torch_or_kopf():
    code = textwrap.dedent(
        """
        import sys
        for name in ("torch", "kopf", "transformers", "kubernetes"):
            sys.modules[name] = None  # any import of them raises ImportError
        from kubetune import cli
        try:
            cli.main(["--help"])
        except SystemExit as e:
            assert e.code == 0
        sys.exit(cli.main(["validate", "-q", "examples"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usage: kubetune" in proc.stdout


def test_folders_skip_helm_charts_and_hidden_folders(tmp_path, capsys):
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "templates" / "crd.yaml").write_text("{{- if .Values.crds.enabled }}\nkind: X\n{{- end }}\n")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "junk.yaml").write_text("a: [\n")
    write(tmp_path, JOB)
    rc, out = run(capsys, "validate", str(tmp_path))
    assert rc == 0, out
    assert out.splitlines()[-1].startswith("1 file(s)")
