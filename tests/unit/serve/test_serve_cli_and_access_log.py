"""`kubetune-trainer serve`: its --help says where the API key comes from, and its access log never writes a query
string (a key sent as ?api_key=... would land in the pod's logs)."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
from serve_live import free_port

from kubetune_trainer.serve import main, make_server

pytestmark = pytest.mark.timeout(60)


def test_help_names_the_api_key_variables(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "KUBETUNE_API_KEY " in out and "KUBETUNE_API_KEY_FILE" in out


def test_the_access_log_has_no_query_strings():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    server = make_server(app, "127.0.0.1", port)
    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Lines()
    logging.getLogger("uvicorn.access").addHandler(handler)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models?api_key=sk-leak-123").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        logging.getLogger("uvicorn.access").removeHandler(handler)
    assert any("/v1/models" in line for line in lines), lines
    assert not any("sk-leak-123" in line for line in lines), lines
