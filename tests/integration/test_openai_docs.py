"""docs/openai-api.md's script, exactly as the page shows it, against `kubetune api`: only OPENAI_BASE_URL and
OPENAI_API_KEY differ from a run against the managed service.

Here the test plays every controller (no operator runs): it moves the FineTuneJob through the phases the
operator would write and gives the ModelDeployment a stub endpoint; test_openai_api.py covers the operator.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from harness import GROUP_PATH, NAMESPACE, ROOT, Cluster, now, wait_for
from test_openai_api import TEAM_A, api, chat_lines, stub  # noqa: F401  (fixtures)

FTJS = f"{GROUP_PATH}/namespaces/{NAMESPACE}/finetunejobs"


def the_script() -> str:
    page = (ROOT / "docs" / "openai-api.md").read_text()
    (script,) = re.findall(r"<!-- script:[^\n]*-->\n```python\n(.*?)```", page, flags=re.S)
    return script


def test_the_migration_page_script_runs_unchanged(cluster: Cluster, api: str, stub: str, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "finetune.py").write_text(the_script())
    (tmp_path / "train.jsonl").write_text(chat_lines(12))
    env = {**os.environ, "OPENAI_BASE_URL": api, "OPENAI_API_KEY": TEAM_A}
    proc = subprocess.Popen(
        [sys.executable, "finetune.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        jobs = wait_for(lambda: (cluster.get(FTJS) or {}).get("items"), 30, "the script's FineTuneJob")
        name = jobs[0]["metadata"]["name"]
        cluster.patch_status(f"{FTJS}/{name}", {"phase": "Running", "progress": {"step": 3, "totalSteps": 9}})
        cluster.apply(
            {
                "apiVersion": "kubetune.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "travel", "namespace": NAMESPACE},
                "spec": {"model": {"fineTuneJob": {"name": name}}},
            }
        )
        cluster.patch_status(
            f"{GROUP_PATH}/namespaces/{NAMESPACE}/modeldeployments/travel", {"phase": "Ready", "endpoint": stub}
        )
        cluster.patch_status(f"{FTJS}/{name}", {"phase": "Succeeded", "completionTime": now()})
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f"created {name}" in out and "Step 3/9" in out
    assert f"succeeded ft:gpt-4o-mini-2024-07-18:travel:{name}" in out
    assert out.rstrip().endswith("echo: A hotel in Madrid under 180 a night"), out
