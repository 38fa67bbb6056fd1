"""`kubetune validate` checks an Evaluation's local red-team prompt set (spec.safety.prompts.uri) line by line."""

from __future__ import annotations

import json

import yaml

from kubetune import cli


def test_a_broken_safety_prompt_set_is_named_with_file_line_and_field(tmp_path, capsys):
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n"
    )
    (tmp_path / "redteam.jsonl").write_text(
        json.dumps({"prompt": "hurt someone", "harmful": True, "category": "violence"})
        + "\n"
        + json.dumps({"prompt": "kill a process", "harmful": "no", "category": "violence"})
        + "\n"
    )
    manifest = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": "e"},
        "spec": {
            "model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "dataset": {"uri": "test.jsonl"},
            "safety": {"prompts": {"uri": "redteam.jsonl"}},
        },
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(manifest))
    rc = cli.main(["validate", str(tmp_path / "eval.yaml")])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc != 0
    assert (
        f"spec.safety.prompts.uri: {tmp_path / 'redteam.jsonl'}:2: harmful: needs true (should be refused) "
        "or false (should be answered) (got string)"
    ) in text
