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

version="5.2.5"
out="${KUBETUNE_S3SERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetune/s3server}/moto-$version"
server="$out/bin/moto_server"

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
"$out/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$version" >&2
touch "$out/.installed"
echo "$server"
