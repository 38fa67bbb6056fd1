#!/usr/bin/env bash
# The MLflow tracking server the tracking tests log to: `mlflow server` (the full `mlflow` distribution) in
# its OWN virtualenv under ~/.cache/kubetune/mlflowserver/mlflow-<version>/ ($KUBETUNE_MLFLOWSERVER_DIR/...
# when set). Its own environment because pip's resolver says full mlflow pins python-dateutil<3 (kubernetes>=37
# in .venv needs >=3) and pyarrow<26; the client the trainer uses (mlflow-skinny) fits .venv and is in the
# trainer extra. A no-op when it is already installed; prints the path of `mlflow`.
#
#   hack/mlflowserver/setup.sh          install if missing, print the mlflow path
#   hack/mlflowserver/setup.sh --path   print the path only (exit 1 when not installed)
#
# Needs python3 (3.10+) and PyPI.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tool-venv.sh"

version="3.17.2"
out="${KUBETUNE_MLFLOWSERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetune/mlflowserver}/mlflow-$version"
tool_venv "$out" "mlflow==$version" mlflow "${1:-}"
