#!/usr/bin/env bash
# Provides the upstream Kubernetes programs for VERSION in CACHE/vVERSION/: kube-apiserver,
# kube-controller-manager and kube-scheduler (what the process runtime runs), kubeadm and
# kubelet (worker join) and kubectl (what users and the tests talk to tenants with). Prints CACHE, the
# --k8s-bin-dir, on stdout; progress goes to stderr.
#
# Where they come from, first that works (KAMAJI_K8S_SOURCE=download|build forces one):
#   1. already in CACHE/vVERSION/ and each one reports VERSION: reused, nothing is fetched;
#   2. the official release binaries, each checked against its published SHA-256 (machines that
#      reach the Kubernetes release site);
#   3. built from the k8s.io/kubernetes Go module at VERSION through tools/k8s-build (machines
#      that reach a Go module proxy; the first build takes 10-20 minutes on two cores, later
#      versions reuse Go's build cache).
#
#   usage: scripts/k8s-binaries.sh 1.37.2 [CACHE]
set -euo pipefail
version=${1:?usage: k8s-binaries.sh VERSION [CACHE]}
version=${version#v}
cache=${2:-${XDG_CACHE_HOME:-$HOME/.cache}/kamaji/k8s}
root=$(cd "$(dirname "$0")/.." && pwd)
source_pref=${KAMAJI_K8S_SOURCE:-auto}
arch=$(uname -m); case "$arch" in x86_64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; esac
dir="$cache/v$version"
programs=(kube-apiserver kube-controller-manager kube-scheduler kubeadm kubectl kubelet kube-proxy)
say() { echo "k8s-binaries: $*" >&2; }

if ! [[ "$version" =~ ^1\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$ ]]; then
  say "$version is not a Kubernetes release such as 1.37.2"; exit 2
fi
minor=$(echo "$version" | cut -d. -f2)

# The version a program reports, as vX.Y.Z.
reported() {
  case "$(basename "$1")" in
    kubeadm) "$1" version -o short 2>/dev/null ;;
    kubectl) "$1" version --client 2>/dev/null | sed -n 's/^Client Version: //p' ;;
    *) "$1" --version 2>/dev/null | awk '{print $2}' ;;
  esac
}

have() { [ -x "$dir/$1" ] && [ "$(reported "$dir/$1")" = "v$version" ]; }
complete() {
  local p
  for p in "${programs[@]}"; do have "$p" || return 1; done
}

mkdir -p "$dir"
# One provider per version at a time (parallel test binaries, a demo beside the tests).
exec 9>"$cache/.lock-v$version"
flock 9

if complete; then echo "$cache"; exit 0; fi

download() {
  local base="https://dl.k8s.io/release/v$version/bin/linux/$arch" p
  for p in "${programs[@]}"; do
    if have "$p"; then continue; fi
    curl -fsSL --connect-timeout 5 -o "$dir/$p.sha256" "$base/$p.sha256" 2>/dev/null || return 1
    curl -fsSL --connect-timeout 5 -o "$dir/$p.part" "$base/$p" 2>/dev/null || { rm -f "$dir/$p.part"; return 1; }
    if ! echo "$(cat "$dir/$p.sha256")  $dir/$p.part" | sha256sum --check --status; then
      rm -f "$dir/$p.part" "$dir/$p.sha256"
      say "$p v$version does not match its published SHA-256; not using it."
      return 1
    fi
    chmod 0755 "$dir/$p.part" && mv "$dir/$p.part" "$dir/$p"
  done
  echo "downloaded from $base, SHA-256 verified" >"$dir/SOURCE"
}

build() {
  command -v go >/dev/null 2>&1 || { say "no Go toolchain on PATH to build them with"; return 1; }
  local work="$cache/build/v$version" start=$SECONDS upstream ld="-s -w" pkg p
  mkdir -p "$work"
  say "building ${programs[*]} v$version from the k8s.io/kubernetes Go module"
  say "(first build: 10-20 minutes on two cores; progress below, reused afterwards)"
  upstream=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$version" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$upstream" ] || { say "cannot download k8s.io/kubernetes@v$version from the Go module proxy"; return 1; }
  {
    sed -e "s/@VERSION@/$version/" -e "s/@GO@/$(sed -n 's/^go \(.*\)/\1/p' "$upstream")/" \
      "$root/tools/k8s-build/go.mod.in"
    echo
    echo "replace ("
    # Each staging module (`k8s.io/api => ./staging/src/k8s.io/api`) at its published v0.<minor>.<patch>.
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/k8s\.io/[a-z0-9-]*$#\t\1 => \1 v0.'"${version#1.}"'#p' "$upstream"
    echo ")"
  } >"$work/go.mod"
  rm -f "$work/go.sum"
  if ! (cd "$work" && GOTOOLCHAIN=local go mod tidy >"$work/tidy.log" 2>&1); then
    grep -v '^go: downloading' "$work/tidy.log" >&2 || true
    say "resolving the build module ($work/go.mod) failed"; return 1
  fi
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=v$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  ( while sleep 60; do say "still building v$version ($(( (SECONDS - start) / 60 )) min)"; done ) &
  local ticker=$!
  # Only what is missing: programs others may be running are never rewritten.
  local args=()
  for p in "${programs[@]}"; do have "$p" || args+=("k8s.io/kubernetes/cmd/$p"); done
  if ! (cd "$work" && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -ldflags "$ld" -o "$dir/" "${args[@]}"); then
    kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
    say "building v$version failed"; return 1
  fi
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  echo "built from k8s.io/kubernetes v$version with $(go env GOVERSION) in $(( SECONDS - start )) s" >"$dir/SOURCE"
  say "built v$version in $(( SECONDS - start )) s"
}

case "$source_pref" in
  download) download || { say "cannot download v$version"; exit 1; } ;;
  build) build || exit 1 ;;
  *) download || build || {
       say "put ${programs[*]} v$version in $dir/ (official 'Server binaries', or build them"
       say "from k8s.io/kubernetes), or any DIR/v$version/, and run with KAMAJI_K8S_BIN_DIR=DIR."
       exit 1
     } ;;
esac
complete || { say "the programs in $dir/ do not all report v$version"; exit 1; }
echo "$cache"
