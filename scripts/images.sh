#!/usr/bin/env bash
# Builds, offline, every container image an admin cluster here runs, from binaries this machine
# already has (no base image, nothing pulled), under the exact names the pods ask for, so a
# kubelet finds them with imagePullPolicy IfNotPresent:
#
#   registry.k8s.io/kube-apiserver, kube-controller-manager, kube-scheduler:v<each version in
#       tools/k8s-build/VERSIONS>   the static binary at /usr/local/bin/<name>, as upstream's images
#   registry.k8s.io/pause:3.10.2    the sandbox, built from k8s.io/kubernetes' build/pause/linux/pause.c
#   registry.k8s.io/etcd:<tools/etcd-build/VERSION>-0   etcd and etcdctl at /usr/local/bin
#   registry.k8s.io/coredns/coredns:<tools/upstream/PROGRAMS>   /coredns
#   registry.k8s.io/kas-network-proxy/proxy-server, proxy-agent:<tools/upstream/PROGRAMS>
#       /proxy-server, /proxy-agent (Konnectivity)
#   kamaji/kamajid:<crate version>  daemon/deploy/image/rootfs.sh's layout (what the Dockerfile builds)
#
# Each is one layer on an empty base, committed with timestamp 0 (the same inputs give the same
# image), saved as a docker archive under CACHE and rebuilt only when its inputs change.
#
#   usage: scripts/images.sh build            builds what is missing; prints CACHE
#          scripts/images.sh import SOCKET    builds, then imports every image into the containerd
#                                             listening on SOCKET (namespace k8s.io)
#   KAMAJID_BIN: the kamajid binary to package (default target/$KAMAJI_BUILD_PROFILE/kamajid, debug)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-build}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kamaji/images
say() { echo "images: $*" >&2; }
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

command -v buildah >/dev/null 2>&1 || { say "buildah is missing (Debian buildah; scripts/install-deps.sh installs it)"; exit 1; }
bah() { buildah --storage-driver vfs --root "$cache/storage" --runroot "$cache/run" "$@"; }

# name:tag -> the archive's file name
archive() { echo "$cache/$(echo "$1" | tr '/:' '__').tar"; }

# build NAME:TAG ROOTFS USER ENTRYPOINT_JSON [CMD_JSON]: one image from a directory, unless an
# archive of the same inputs exists.
build() {
  local ref=$1 rootfs=$2 user=$3 entrypoint=$4 cmd=${5:-} out stamp sum c
  out=$(archive "$ref")
  sum=$( (cd "$rootfs" && find . -type f -print0 | sort -z | xargs -0 sha256sum; \
          echo "$ref $user $entrypoint $cmd") | sha256sum | cut -d' ' -f1)
  stamp="$out.inputs"
  if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then return 0; fi
  say "building $ref"
  c=$(bah from --quiet scratch)
  bah copy --quiet "$c" "$rootfs/" / >/dev/null
  bah config --user "$user" --env PATH=/usr/local/bin:/usr/bin:/bin \
    --entrypoint "$entrypoint" --cmd "$cmd" --os linux --arch "$(go env GOARCH 2>/dev/null || echo amd64)" "$c"
  bah commit --quiet --rm --timestamp 0 "$c" "$ref" >/dev/null
  rm -f "$out"
  bah push --quiet "$ref" "docker-archive:$out:$ref" >/dev/null
  bah rmi --force "$ref" >/dev/null 2>&1 || true
  echo "$sum" >"$stamp"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One directory holding each of `files` (absolute paths) at /usr/local/bin.
bin_root() {
  local dir=$1; shift
  mkdir -p "$dir/usr/local/bin"
  cp "$@" "$dir/usr/local/bin/"
}

build_all() {
  local v k8s_cache etcd_dir etcd_version coredns pause_src gomod kamajid profile version
  # The Kubernetes components, for every version the tests and the demo run.
  for v in $(grep -v '^#' "$root/tools/k8s-build/VERSIONS"); do
    k8s_cache=$("$root/scripts/k8s-binaries.sh" "$v")
    for p in kube-apiserver kube-controller-manager kube-scheduler; do
      bin_root "$work/$p-$v" "$k8s_cache/v$v/$p"
      build "registry.k8s.io/$p:v$v" "$work/$p-$v" 65532:65532 '[]'
    done
  done
  # The sandbox: pause.c from the newest version's module, static, as upstream builds it.
  v=$(grep -v '^#' "$root/tools/k8s-build/VERSIONS" | tail -n 1)
  gomod=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$v" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  pause_src="$gomod/build/pause/linux/pause.c"
  [ -f "$pause_src" ] || { say "no pause.c in k8s.io/kubernetes@v$v"; exit 1; }
  local pause_tag
  pause_tag=$(sed -n 's/^TAG ?= //p' "$gomod/build/pause/Makefile")
  mkdir -p "$work/pause"
  gcc -Os -Wall -Werror -static -DVERSION="v$pause_tag-kamaji" -o "$work/pause/pause" "$pause_src"
  strip "$work/pause/pause"
  build "registry.k8s.io/pause:$pause_tag" "$work/pause" 65535:65535 '["/pause"]'
  # etcd, for the chart's bundled state etcd.
  etcd_dir=$("$root/scripts/etcd.sh")
  etcd_version=$(grep -v '^#' "$root/tools/etcd-build/VERSION" | head -n 1)
  bin_root "$work/etcd" "$etcd_dir/etcd" "$etcd_dir/etcdctl"
  build "registry.k8s.io/etcd:$etcd_version-0" "$work/etcd" 65532:65532 '[]'
  # CoreDNS, for the admin cluster's service names.
  coredns=$("$root/scripts/go-tool.sh" coredns)
  mkdir -p "$work/coredns" && cp "$coredns" "$work/coredns/coredns"
  build "registry.k8s.io/coredns/coredns:$(awk '$1 == "coredns" {print $3}' "$root/tools/upstream/PROGRAMS")" \
    "$work/coredns" 65532:65532 '["/coredns"]'
  # The Konnectivity server (beside tenant apiservers) and agent (the tenant add-on), at
  # /proxy-server and /proxy-agent as upstream's images have them.
  local knp_version knp
  knp_version=$(awk '$1 == "konnectivity-server" {print $3}' "$root/tools/upstream/PROGRAMS")
  for knp in server agent; do
    mkdir -p "$work/proxy-$knp"
    cp "$("$root/scripts/go-tool.sh" "konnectivity-$knp")" "$work/proxy-$knp/proxy-$knp"
    build "registry.k8s.io/kas-network-proxy/proxy-$knp:$knp_version" "$work/proxy-$knp" 65532:65532 "[\"/proxy-$knp\"]"
  done
  # kamajid, laid out as the Dockerfile lays it out.
  profile=${KAMAJI_BUILD_PROFILE:-debug}
  kamajid=${KAMAJID_BIN:-$root/target/$profile/kamajid}
  [ -x "$kamajid" ] || { say "no kamajid at $kamajid: cargo build -p kamajid (or set KAMAJID_BIN)"; exit 1; }
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
  "$root/daemon/deploy/image/rootfs.sh" "$kamajid" "$work/kamajid"
  build "kamaji/kamajid:$version" "$work/kamajid" 65532:65532 '["/usr/local/bin/kamajid"]' '["serve"]'
}

case "$cmd" in
  build)
    build_all
    echo "$cache"
    ;;
  import)
    sock=${2:?usage: images.sh import SOCKET}
    build_all
    for a in "$cache"/*.tar; do
      ctr --address "$sock" --namespace k8s.io images import --all-platforms "$a" >/dev/null
    done
    say "imported $(ls "$cache"/*.tar | wc -l) images into $sock"
    ;;
  *) say "usage: images.sh build | import SOCKET"; exit 2 ;;
esac
