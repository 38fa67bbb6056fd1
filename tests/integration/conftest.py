"""Fixtures of the integration tests. The harness (API server, kubectl, operator runners) lives in
harness.py; import helpers from there (`from harness import ...`). The names below stay importable
from conftest for tests written before the split."""

from harness import (  # noqa: F401
    GROUP_PATH,
    KUBECTL,
    NAMESPACE,
    ROOT,
    Cluster,
    InProcessOperator,
    OperatorProcess,
    cluster,
    dump,
    example,
    now,
    operator,
    operator_env,
    real_server,
    wait_for,
)
