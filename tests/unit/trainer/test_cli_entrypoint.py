"""`kubetune-trainer` hands the subcommands with parsers of their own the command line as it is."""

import json

from kubetune_trainer import cli


def test_init_tiny_accepts_options_before_the_output(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"text": f"hotel {i} in lisbon costs {100 + i} euros"} for i in range(40)]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "tiny"
    assert cli.main(["init-tiny", "--seed", "3", "--from-data", str(data), "--size", "nano", str(out)]) == 0
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()


def test_evaluate_and_serve_say_why_a_config_cannot_be_read(tmp_path, capsys):
    missing = str(tmp_path / "nope.json")
    assert cli.main(["evaluate", "--config", missing]) == 2
    assert cli.main(["serve", "--config", missing]) == 2
    assert "nope.json" in capsys.readouterr().err
