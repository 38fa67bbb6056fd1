#!/usr/bin/env bash
# Prometheus and promtool for the tests (the alert rules' `promtool check/test rules`, and a real server that
# scrapes the operator's /metrics): Debian's `prometheus` package, unpacked (apt-get download + dpkg -x) into
# ~/.cache/kubetune/prometheus/<version>/ ($KUBETUNE_PROMETHEUS_DIR/<version> when set). Nothing is installed
# into the system and no service is started. A no-op when it is already there; prints the folder holding
# `prometheus` and `promtool`.
#
#   hack/prometheus/setup.sh          unpack if missing, print the bin folder
#   hack/prometheus/setup.sh --path   print the bin folder only (exit 1 when not unpacked)
#
# Needs apt (Debian/Ubuntu). The first run took about 20 s here (one 30 MB .deb; apt-get update when apt's
# lists do not know the package yet).
set -euo pipefail

root="${KUBETUNE_PROMETHEUS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetune/prometheus}"
found() {
  local bin
  for bin in "$root"/*/usr/bin; do
    if [[ -x "$bin/prometheus" && -x "$bin/promtool" && -f "$bin/../../.installed" ]]; then
      echo "$bin"
      return 0
    fi
  done
  return 1
}

found && exit 0
[[ "${1:-}" == "--path" ]] && exit 1
command -v apt-get >/dev/null || { echo "hack/prometheus/setup.sh: needs apt-get (Debian's prometheus package)" >&2; exit 1; }
if ! apt-cache show prometheus >/dev/null 2>&1; then
  apt-get update -qq >&2
fi
version="$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')"
[[ -n "$version" && "$version" != "(none)" ]] || { echo "hack/prometheus/setup.sh: apt knows no prometheus package" >&2; exit 1; }
out="$root/${version//[^A-Za-z0-9.+-]/_}"
work="$(mktemp -d)"
chmod 755 "$work"  # apt-get download drops to the _apt user
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "prometheus=$version" >&2)
rm -rf "$out"
mkdir -p "$out"
dpkg -x "$work"/prometheus_*.deb "$out"
touch "$out/.installed"
found
