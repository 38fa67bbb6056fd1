#!/usr/bin/env bash
# The S3-compatible server the integration tests upload to and read from: moto's server mode, in its OWN
# virtualenv under ~/.cache/kubetune/s3server/moto-<version>/ ($KUBETUNE_S3SERVER_DIR/moto-<version> when set).
# Its own environment because moto[server] pulls botocore, whose python-dateutil<3 pin conflicts with
# kubernetes>=37 in .venv. A no-op when it is already installed; prints the path of `moto_server`.
#
#   hack/s3server/setup.sh          install if missing, print the moto_server path
#   hack/s3server/setup.sh --path   print the path only (exit 1 when not installed)
#
# Needs python3 (3.9+) and PyPI. The first install took about 40 s here (moto, flask, botocore...).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tool-venv.sh"

version="5.2.5"
out="${KUBETUNE_S3SERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetune/s3server}/moto-$version"
tool_venv "$out" "moto[server]==$version" moto_server "${1:-}"
