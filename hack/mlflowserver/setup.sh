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

version="3.17.2"
out="${KUBETUNE_MLFLOWSERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetune/mlflowserver}/mlflow-$version"
server="$out/bin/mlflow"

if [[ -x "$server" && -f "$out/.installed" ]]; then
  echo "$server"
  exit 0
fi
[[ "${1:-}" == "--path" ]] && exit 1

python="${PYTHON:-python3}"
# Installed in place; `.installed` is written last, so an interrupted install is redone from scratch.
rm -rf "$out"
mkdir -p "$(dirname "$out")"
"$python" -m venv "$out" >&2
"$out/bin/pip" install --quiet --disable-pip-version-check "mlflow==$version" >&2
touch "$out/.installed"
echo "$server"
