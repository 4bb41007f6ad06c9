#!/usr/bin/env bash
# Assembles the runtime image of defender-ingest FROM scratch with buildah, from a binary built
# on this host: no registry, no base image, so it works where nothing can be pulled. The layout
# is the one deploy/Dockerfile produces:
#
#   /usr/local/bin/defender-ingest        the binary (ENTRYPOINT)
#   <each shared library ldd lists>       at the path ldd resolves it to, plus the ELF interpreter
#   /etc/ssl/certs/ca-certificates.crt    the host's CA bundle (SSL_CERT_FILE points at it)
#   /etc/passwd, /etc/group               root and the runtime user nonroot, 65532:65532
#   /etc/{hosts,hostname,resolv.conf}, /proc, /sys, /dev, /run, /tmp   empty: a runtime's mount points
#
# Every file is owned by root and not writable by anyone else; the image runs as 65532:65532.
#
# Usage:
#   bash scripts/build-image.sh [--binary PATH] [--tag NAME] [--manifest FILE]
#   bash scripts/build-image.sh [--binary PATH] --rootfs DIR
#     --binary    the defender-ingest binary (default target/release/defender-ingest)
#     --tag       image name (default localhost/defender-ingest:dev)
#     --manifest  also write "<path> <mode> <uid>:<gid> <sha256>" of every file put in the image
#                 (what tests compare the image filesystem with after running it)
#     --rootfs    only lay the image's files out in DIR (new or empty), no buildah: what
#                 deploy/Dockerfile's builder stage does before `COPY --from=builder DIR /`
#
# buildah's storage: BUILDAH_ROOT / BUILDAH_RUNROOT (default: buildah's own), always the `vfs`
# driver (works without fuse or overlay support). Prints the image id on stdout.
# Push with e.g. `buildah push localhost/defender-ingest:dev docker://myacr.azurecr.io/defender-ingest:1.2.3`.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BINARY="${REPO_ROOT}/target/release/defender-ingest"
TAG="localhost/defender-ingest:dev"
MANIFEST=""
ROOTFS_ONLY=""
RUNTIME_UID=65532
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

die() {
    printf 'build-image: error: %s\n' "$*" >&2
    exit 1
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --binary) BINARY="$2" && shift 2 ;;
    --tag) TAG="$2" && shift 2 ;;
    --manifest) MANIFEST="$2" && shift 2 ;;
    --rootfs) ROOTFS_ONLY="$2" && shift 2 ;;
    -h | --help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2 && exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

[[ -n ${ROOTFS_ONLY} ]] || command -v buildah >/dev/null ||
    die "buildah is not on PATH: bash scripts/test-infra.sh install installs it (Debian package buildah)"
command -v ldd >/dev/null || die "ldd is not on PATH"
[[ -x ${BINARY} ]] || die "${BINARY} is not an executable: build it first (cargo build --release -p defender-ingest)"
[[ -f ${CA_BUNDLE} ]] || die "${CA_BUNDLE} is missing (Debian package ca-certificates)"

BUILDAH=(buildah --storage-driver vfs)
[[ -n ${BUILDAH_ROOT:-} ]] && BUILDAH+=(--root "${BUILDAH_ROOT}")
[[ -n ${BUILDAH_RUNROOT:-} ]] && BUILDAH+=(--runroot "${BUILDAH_RUNROOT}")

STAGE="$(mktemp -d)"
CTR=""
cleanup() {
    rm -rf "${STAGE}"
    if [[ -n ${CTR} ]]; then
        "${BUILDAH[@]}" rm "${CTR}" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
ROOTFS="${ROOTFS_ONLY:-${STAGE}/rootfs}"
mkdir -p "${ROOTFS}"
[[ -z "$(ls -A "${ROOTFS}")" ]] || die "${ROOTFS} is not empty"

# put SRC DEST MODE: a regular file (symlinks followed) at DEST in the image.
put() {
    install -D -m "$3" "$1" "${ROOTFS}$2"
}

put "${BINARY}" /usr/local/bin/defender-ingest 0755

# The shared libraries, at the paths the dynamic loader finds them (`name => /path (addr)`), and
# the interpreter (`/lib64/ld-linux-x86-64.so.2 (addr)`). A statically linked binary has none.
LDD_OUT="$(ldd "${BINARY}" 2>&1)" || [[ ${LDD_OUT} == *"not a dynamic executable"* ]] ||
    die "ldd ${BINARY} failed: ${LDD_OUT}"
[[ ${LDD_OUT} != *"not found"* ]] || die "a library of ${BINARY} is not found: ${LDD_OUT}"
LIBS=()
while read -r first arrow path _; do
    if [[ ${arrow} == "=>" && ${path} == /* ]]; then
        LIBS+=("${path}")
    elif [[ ${first} == /* ]]; then
        LIBS+=("${first}")
    fi
done <<<"${LDD_OUT}"
for lib in "${LIBS[@]}"; do
    put "${lib}" "${lib}" 0755
done

put "${CA_BUNDLE}" "${CA_BUNDLE}" 0644
mkdir -p "${ROOTFS}/etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n' \
    "${RUNTIME_UID}" "${RUNTIME_UID}" >"${ROOTFS}/etc/passwd"
printf 'root:x:0:\nnonroot:x:%d:\n' "${RUNTIME_UID}" >"${ROOTFS}/etc/group"
: >"${ROOTFS}/etc/hosts"
: >"${ROOTFS}/etc/hostname"
: >"${ROOTFS}/etc/resolv.conf"
chmod 0644 "${ROOTFS}"/etc/{passwd,group,hosts,hostname,resolv.conf}
mkdir -p "${ROOTFS}"/{proc,sys,dev,run,tmp,home/nonroot}
find "${ROOTFS}" -type d -exec chmod 0755 {} +

if [[ -n ${MANIFEST} ]]; then
    mkdir -p "$(dirname "${MANIFEST}")"
    (cd "${ROOTFS}" && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do
        if [[ -f ${p} ]]; then sum="$(sha256sum "${p}" | cut -d' ' -f1)"; else sum=-; fi
        printf '%s %s 0:0 %s\n' "${p#.}" "$(stat -c '%a' "${p}")" "${sum}"
    done) >"${MANIFEST}"
fi

[[ -z ${ROOTFS_ONLY} ]] || exit 0

# A `key = "value"` of the workspace's Cargo.toml ([workspace.package]).
workspace_key() {
    sed -n "s/^$1 *= *\"\(.*\)\"/\1/p" "${REPO_ROOT}/Cargo.toml" | head -n1
}
VERSION="$("${BINARY}" --version | awk '{print $2}')"
REVISION="$(git -C "${REPO_ROOT}" rev-parse HEAD 2>/dev/null || echo unknown)"

CTR="$("${BUILDAH[@]}" from --quiet scratch)"
"${BUILDAH[@]}" copy --quiet --chown 0:0 "${CTR}" "${ROOTFS}/" / >/dev/null
"${BUILDAH[@]}" config \
    --user "${RUNTIME_UID}:${RUNTIME_UID}" \
    --workingdir / \
    --env SSL_CERT_FILE="${CA_BUNDLE}" \
    --entrypoint '["/usr/local/bin/defender-ingest"]' \
    --cmd '["run", "--config", "/etc/defender-ingest/config.toml"]' \
    --port 9464/tcp \
    --label org.opencontainers.image.title=defender-ingest \
    --label org.opencontainers.image.description="Microsoft Defender XDR events to Sentinel and a Parquet archive" \
    --label org.opencontainers.image.version="${VERSION}" \
    --label org.opencontainers.image.revision="${REVISION}" \
    --label org.opencontainers.image.licenses="$(workspace_key license)" \
    --label org.opencontainers.image.source="$(workspace_key repository)" \
    "${CTR}"
"${BUILDAH[@]}" commit --quiet --rm "${CTR}" "${TAG}"
CTR=""
