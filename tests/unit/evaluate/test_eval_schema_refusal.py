"""A run config written by hand (never admitted) with a json_schema the graders cannot use: one line, exit 2."""

from __future__ import annotations

import json

import pytest

from kubetune import constants as c
from kubetune.api.evaluation import EvaluationSpec
from kubetune.api.runconfig import EvalRunConfig, EvalTarget, Identity
from kubetune_trainer.evaluate import main


@pytest.mark.parametrize(
    ("schema", "said"),
    [
        ({"$ref": "https://schemas.example.com/booking.json"}, "points outside the schema"),
        ({"type": "object", "properties": {"a": {"$ref": "file:///etc/passwd"}}}, "points outside the schema"),
        ({"type": "no-such-type"}, "not a valid JSON schema"),
    ],
)
def test_an_unusable_json_schema_ends_the_evaluation_with_one_line_naming_spec_json_schema(
    schema, said, tmp_path, capsys, monkeypatch
):
    data = tmp_path / "test.jsonl"
    data.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "{}"}]})
            + "\n"
            for i in range(3)
        )
    )
    spec = EvaluationSpec.model_validate(
        {
            "model": {"fineTuneJob": {"name": "booking"}},
            "baseline": {"none": True},
            "dataset": {"uri": str(data)},
            "metrics": ["json_schema"],
            "jsonSchema": {"type": "object"},
        }
    )
    cfg = EvalRunConfig(
        job=Identity(name="booking-eval"),
        spec=spec,
        targets=[EvalTarget(name="final", uri=str(tmp_path / "no-model-is-loaded"))],
        output_dir=str(tmp_path / "out"),
    )
    written = json.loads(cfg.dump())
    written["spec"]["jsonSchema"] = schema  # by hand, as admission would never let it through
    (tmp_path / "run-config.json").write_text(json.dumps(written))
    termination_log = tmp_path / "termination-log"
    monkeypatch.setenv(c.ENV_TERMINATION_LOG, str(termination_log))

    assert main(["--config", str(tmp_path / "run-config.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err, err
    assert err.startswith(f"evaluate: the run config {tmp_path / 'run-config.json'} is invalid: spec.jsonSchema: ")
    assert "configuration error: " in termination_log.read_text() and "spec.jsonSchema: " in termination_log.read_text()
    assert not (tmp_path / "out").exists()  # refused before anything ran
