"""RFT rewards from declared graders: exact match, regex, JSON schema, string similarity, weights."""

import pytest

from kubetune.api.finetunejob import Grader
from kubetune_trainer.graders import reward_functions


def _one(grader: dict):
    funcs, weights = reward_functions([Grader.model_validate(grader)])
    return funcs[0], weights[0]


def test_exact_match_reads_the_reference_field_and_ignores_spacing():
    fn, w = _one({"type": "exact_match", "field": "answer", "weight": 2})
    assert w == 2
    completions = ["SHOW hotels  IN paris", "SHOW hotels IN rome", [{"role": "assistant", "content": "42"}]]
    assert fn(completions, answer=["SHOW hotels IN paris", "SHOW hotels IN paris", "42"]) == [1.0, 0.0, 1.0]


def test_regex():
    fn, _ = _one({"type": "regex", "pattern": r"^SHOW hotels( IN [a-z]+)?$"})
    assert fn(["SHOW hotels IN lisbon", "show me hotels"]) == [1.0, 0.0]


def test_json_schema():
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    fn, _ = _one({"type": "json_schema", "schema": schema})
    assert fn(['{"city": "porto"}', '{"town": "porto"}', "not json"]) == [1.0, 0.0, 0.0]


def test_string_similarity_is_graded():
    fn, _ = _one({"type": "string_similarity", "field": "answer"})
    exact, close, far = fn(["SHOW hotels IN paris", "SHOW hotels IN pari", "zzz"], answer=["SHOW hotels IN paris"] * 3)
    assert exact == 1.0 and 0.8 < close < 1.0 and far < 0.2


def test_a_missing_reference_field_names_the_field():
    fn, _ = _one({"type": "exact_match", "field": "query"})
    with pytest.raises(KeyError, match="query"):
        fn(["x"], answer=["x"])


def test_several_graders_keep_their_weights_and_distinct_names():
    funcs, weights = reward_functions(
        [
            Grader(type="exact_match", weight=1.0),
            Grader(type="regex", pattern="x", weight=0.5),
            Grader(type="regex", pattern="y", weight=0.25),
        ]
    )
    assert weights == [1.0, 0.5, 0.25]
    assert [f.__name__ for f in funcs] == ["exact_match", "regex_1", "regex_2"]


def test_exact_match_compares_json_references_as_json():
    """A reinforcement dataset's reference may be a JSON value (true, 3.5, an object), not only a string."""
    fn, _ = _one({"type": "exact_match", "field": "answer"})
    completions = ["true", '{"city": "Lisbon", "nights": 2}', "3.5", "false"]
    refs = [True, {"nights": 2, "city": "Lisbon"}, 3.5, True]
    assert fn(completions, answer=refs) == [1.0, 1.0, 1.0, 0.0]


def test_string_similarity_reads_json_references_as_json_text():
    fn, _ = _one({"type": "string_similarity", "field": "answer"})
    assert fn(['{"city": "Lisbon"}'], answer=[{"city": "Lisbon"}]) == [1.0]


def test_default_graders_read_the_completion_of_prompt_completion_data():
    """rft accepts prompt-completion data; the graders' default field `answer` must find its completion."""
    from kubetune_trainer.methods import _rft_rows

    rows = _rft_rows(
        [
            {"prompt": "Capital of Portugal?", "completion": "Lisbon"},
            {
                "prompt": [{"role": "user", "content": "Capital of Spain?"}],
                "completion": [{"role": "assistant", "content": "Madrid"}],
            },
        ]
    )
    fn, _ = _one({"type": "exact_match"})
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}  # what GRPO passes the reward functions
    assert fn(["Lisbon", "Madrid"], **columns) == [1.0, 1.0]


# --- hostile completions and schemas: bounded time, no network, no files -----------------------------------

EVIL = r"(a|aa)+$"  # catastrophic backtracking: with `re`, minutes on 40 characters


@pytest.fixture
def short_regex_timeout(monkeypatch):
    from kubetune_trainer import matching

    monkeypatch.setattr(matching, "REGEX_TIMEOUT_SECONDS", 0.2)


def test_a_regex_grader_has_a_time_bound_per_completion(short_regex_timeout, caplog):
    import time

    fn, _ = _one({"type": "regex", "name": "evil", "pattern": EVIL})
    started = time.monotonic()
    scores = fn(["a" * 40 + "b", "aaaa", "a" * 60 + "!"])
    elapsed = time.monotonic() - started
    assert scores == [0.0, 1.0, 0.0]  # the two that ran out of time score 0; training goes on
    assert elapsed < 5, f"{elapsed:.1f}s"  # bounded (generous for a busy machine): unbounded it is minutes
    assert fn.timeouts.count == 2
    assert "grader 'evil'" in caplog.text and "scored 0" in caplog.text


class _Server:
    """A local HTTP server that counts the requests it gets (a schema's remote $ref must never reach it)."""

    def __enter__(self):
        import http.server
        import threading

        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                body = b'{"type": "string"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/schema.json"
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()


@pytest.mark.parametrize("where", ["top", "nested"])
def test_a_json_schema_grader_never_fetches_a_remote_ref(where, tmp_path):
    """Admission refuses such a schema (tests/unit/api/test_grader_admission.py); the trainer, handed one that
    skipped admission (model_construct), refuses it by the same rule."""
    from kubetune_trainer.modeling import TrainerConfigError

    def unadmitted(schema: dict):
        funcs, _ = reward_functions([Grader.model_construct(type="json_schema", schema_=schema)])
        return funcs[0]

    with _Server() as server:
        ref = {"$ref": server.url}
        schema = ref if where == "top" else {"type": "object", "properties": {"city": ref}}
        with pytest.raises(TrainerConfigError, match=r"spec\.rft\.graders\[0\]\.schema: \$ref .* points outside"):
            unadmitted(schema)(['"x"', '{"city": "x"}'])  # once: each completion fetched the $ref over HTTP
        assert server.hits == []
    secret = tmp_path / "secret.json"
    secret.write_text('{"type": "string"}')
    with pytest.raises(TrainerConfigError, match="never fetches anything"):
        unadmitted({"$ref": secret.as_uri()})


def test_a_json_schema_grader_resolves_refs_inside_the_schema():
    schema = {
        "$defs": {"city": {"type": "string", "minLength": 2}},
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/city"}},
        "required": ["city"],
    }
    fn, _ = _one({"type": "json_schema", "schema": schema})
    assert fn(['{"city": "Porto"}', '{"city": "P"}']) == [1.0, 0.0]


def test_a_json_schema_pattern_is_bounded_too(short_regex_timeout):
    import time

    fn, _ = _one({"type": "json_schema", "schema": {"type": "string", "pattern": EVIL}})
    started = time.monotonic()
    assert fn([f'"{"a" * 40}b"', '"aaaa"']) == [0.0, 1.0]
    assert time.monotonic() - started < 5 and fn.timeouts.count == 1


def test_json_nested_too_deep_scores_zero_instead_of_crashing():
    fn, _ = _one({"type": "json_schema", "schema": {"type": "array"}})
    assert fn(["[" * 100_000 + "]" * 100_000, "[]"]) == [0.0, 1.0]
    exact, _ = _one({"type": "exact_match", "field": "answer"})
    assert exact(["[" * 100_000], answer=[[1]]) == [0.0]
