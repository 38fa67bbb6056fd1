"""`kubetune-trainer init-tiny` (behind `kubetune model init-tiny`): a loadable model with a chat template."""

import json

from trainer_helpers import FIXTURES

from kubetune_trainer.cli import main


def test_init_tiny_writes_a_model_that_loads_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "tiny"
    rc = main(["init-tiny", str(out), "--from-data", str(FIXTURES / "prompt_completion.jsonl"), "--size", "nano"])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["hidden_size"] == 64
    tok = AutoTokenizer.from_pretrained(out)
    text = "SHOW hotels IN lisbon PRICE < 120"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level BPE: text comes back unchanged
    msgs = [{"role": "user", "content": "hotels in Lisbon"}, {"role": "assistant", "content": "SHOW hotels IN lisbon"}]
    enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    answer = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tok.decode(answer) == "SHOW hotels IN lisbon<|im_end|>"  # loss on the answer and its stop token
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert model.generate(**prompt, max_new_tokens=3, do_sample=False).shape[1] <= prompt["input_ids"].shape[1] + 3


def test_init_tiny_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    args = ["--from-data", str(FIXTURES / "text.jsonl"), "--size", "nano", "--seed", "3"]
    assert main(["init-tiny", str(tmp_path / "a"), *args]) == 0
    assert main(["init-tiny", str(tmp_path / "b"), *args]) == 0
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)


def test_init_tiny_missing_data_file(tmp_path, capsys):
    assert main(["init-tiny", str(tmp_path / "x"), "--from-data", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
