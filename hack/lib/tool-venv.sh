# Sourced by hack/*/setup.sh: a test tool in a virtualenv of its own (its pins stay out of .venv).
#
#   tool_venv OUT REQUIREMENT BINARY [--path]
#
# Prints OUT/bin/BINARY when OUT holds a finished install; otherwise exits 1 with --path, or installs
# REQUIREMENT into a fresh venv at OUT first. `.installed` is written last, so an interrupted install is
# redone from scratch.
tool_venv() {
  local out="$1" requirement="$2" server="$1/bin/$3" mode="${4:-}"
  if [[ -x "$server" && -f "$out/.installed" ]]; then
    echo "$server"
    return 0
  fi
  [[ "$mode" == "--path" ]] && exit 1
  rm -rf "$out"
  mkdir -p "$(dirname "$out")"
  "${PYTHON:-python3}" -m venv "$out" >&2
  "$out/bin/pip" install --quiet --disable-pip-version-check "$requirement" >&2
  touch "$out/.installed"
  echo "$server"
}
