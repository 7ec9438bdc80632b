#!/usr/bin/env bash
# Runs every check the project has, in the order CI runs them:
#   formatting, clippy, the Rust tests, the Python SDK tests, the conformance
#   runner over every example backend (Rust, Python, shell), a fuzz smoke run.
# Needs: cargo, python3 (3.9+) with venv; pytest is installed into a private
# virtualenv under target/ on first use.
#
#   ./run-tests.sh            everything
#   FUZZ_SECONDS=0 ./run-tests.sh   everything but the fuzz smoke run
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build (debug, with examples)"
cargo build --workspace --all-targets --examples

step "cargo test"
cargo test --workspace

step "Python SDK: install into target/py-venv, run pytest"
venv=target/py-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet pytest
fi
"$venv/bin/pip" install --quiet --force-reinstall --no-deps ./sdk-python
"$venv/bin/python" -m pytest -q sdk-python/tests
"$venv/bin/python" -m pytest -q backends/filter-senders/tests

step "conformance runner over every example backend"
runner=target/debug/smtpd-conformance
fixtures=protocol-spec/vectors/fixtures
py="$venv/bin/python"
conform() {
  local family=$1 fixture=$2
  shift 2
  echo "--- $family ($fixture): $*"
  if [ "$fixture" = none ]; then
    "$runner" "$family" -- "$@"
  else
    "$runner" "$family" --fixture "$fixture" -- "$@"
  fi
}
conform table standard.table target/debug/examples/table_static "$fixtures/standard.table"
conform filter standard.filter target/debug/examples/filter_guard
conform queue none target/debug/examples/queue_memory
conform table standard.table "$py" -m smtpd_sdk.examples.table_static "$fixtures/standard.table"
conform table standard.table "$py" -m smtpd_sdk.examples.table_static --asyncio "$fixtures/standard.table"
conform filter standard.filter "$py" -m smtpd_sdk.examples.filter_guard
conform filter standard.filter "$py" -m smtpd_sdk.examples.filter_guard --asyncio
conform queue none "$py" -m smtpd_sdk.examples.queue_memory
conform queue none "$py" -m smtpd_sdk.examples.queue_memory --asyncio
conform table standard.table protocol-spec/examples/table-shell.sh "$fixtures/standard.table"
# The example filters decide for themselves (not as the standard fixture says).
conform filter none target/debug/filter-prometheus 127.0.0.1:0
conform filter none "$py" backends/filter-senders/filter_senders.py backends/filter-senders/senders.example
# queue-sqlite keeps its file between runs; each case wants an empty queue.
qdir=$(mktemp -d)
printf 'dbpath %s/queue.sqlite\n' "$qdir" >"$qdir/queue.conf"
conform queue none sh -c "rm -f '$qdir'/queue.sqlite*; exec target/debug/queue-sqlite '$qdir/queue.conf'"
rm -rf "$qdir"

if [ "${FUZZ_SECONDS:-10}" != 0 ]; then
  step "fuzz smoke run (${FUZZ_SECONDS:-10}s per target)"
  fuzz/run-smoke.sh
fi

step "all checks passed"
