"""An endpoint teacher that cannot be reached ends the trainer with its one-line TeacherError and the failed
exit code, not a Python traceback."""

from __future__ import annotations

from types import SimpleNamespace

from kubetune import constants as c
from kubetune_trainer import cli, train
from kubetune_trainer.teacher import TeacherError


def test_a_teacher_error_is_one_line_and_exit_failed(tmp_path, monkeypatch, capsys):
    message = "teacher http://teacher:8000/v1 unreachable after 5 attempts (connection refused)"

    def unreachable(cfg, **kwargs):
        raise TeacherError(message)

    monkeypatch.setattr(train, "load_config", lambda path: SimpleNamespace(spec=SimpleNamespace(s3=None)))
    monkeypatch.setattr(train, "run", unreachable)
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    assert cli.main(["train", "--config", str(tmp_path / "run.json")]) == c.EXIT_FAILED
    err = capsys.readouterr().err
    assert err.strip() == f"kubetune-trainer: {message}" and "Traceback" not in err
