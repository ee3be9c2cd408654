# Shared by the scripts that build or fetch a server for the tests, cached by version outside the
# repository: logging, the Go version check, and one build at a time per output (flock). Sourced,
# never run. The caller sets, before sourcing:
#   BUILD_NAME     the log prefix, e.g. build-influxd
#   OUT            the binary's final path; its directory holds the lock
#   VERSION_ARGS   the binary's version command, e.g. (version) or (--version)
#   FORCE          1 to rebuild even when the binary exists

log() { printf '[%s] %s\n' "$BUILD_NAME" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# Whether a usable binary is already in place.
built() { [[ -x "$OUT" && "${FORCE:-0}" != 1 ]] && "$OUT" "${VERSION_ARGS[@]}" >/dev/null 2>&1; }

# Prints the cached binary's path and ends the script when there is one.
exit_if_built() {
  if built; then
    log "${1:-cached}: $("$OUT" "${VERSION_ARGS[@]}" | head -n 1) at $OUT"
    echo "$OUT"
    exit 0
  fi
}

# Dies unless `go` of at least 1.<minor> is on PATH; $2 says what needs it.
require_go() {
  command -v go >/dev/null 2>&1 || die "go is missing: install Go >= 1.$1 (https://go.dev/dl/)"
  local go_minor
  go_minor="$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
  [[ -n "$go_minor" && "$go_minor" -ge "$1" ]] ||
    die "go $(go env GOVERSION) is too old: $2 needs Go >= 1.$1"
}

# One build at a time (parallel test workers, two checkouts): waits for a running one, and ends
# the script when that one produced the binary.
lock_build() {
  mkdir -p "$(dirname "$OUT")"
  exec 9>"$(dirname "$OUT")/.lock"
  if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
  fi
  exit_if_built "built by a concurrent run"
}
