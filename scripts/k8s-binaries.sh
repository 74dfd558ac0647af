#!/usr/bin/env bash
# Fetches the official Kubernetes server binaries the process runtime runs (kube-apiserver,
# kube-controller-manager, kube-scheduler) for VERSION into CACHE/vVERSION/, each checked against
# its published SHA-256. Prints CACHE (the --k8s-bin-dir) on success. Already cached and verified
# binaries are not fetched again.
#   usage: scripts/k8s-binaries.sh 1.35.2 [CACHE]
set -euo pipefail
version=${1:?usage: k8s-binaries.sh VERSION [CACHE]}
version=${version#v}
cache=${2:-${XDG_CACHE_HOME:-$HOME/.cache}/kamaji/k8s}
arch=$(uname -m); case "$arch" in x86_64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; esac
dir="$cache/v$version"
base="https://dl.k8s.io/release/v$version/bin/linux/$arch"
mkdir -p "$dir"
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  if [ -x "$dir/$c" ] && [ -f "$dir/$c.sha256" ] \
     && echo "$(cat "$dir/$c.sha256")  $dir/$c" | sha256sum --check --status; then
    continue
  fi
  if ! curl -fsSL --connect-timeout 10 -o "$dir/$c.sha256" "$base/$c.sha256" \
     || ! curl -fsSL --connect-timeout 10 -o "$dir/$c.part" "$base/$c"; then
    rm -f "$dir/$c.part" "$dir/$c.sha256"
    echo "k8s-binaries: cannot download $base/$c (no network to dl.k8s.io?)." >&2
    echo "k8s-binaries: put kube-apiserver, kube-controller-manager and kube-scheduler v$version" >&2
    echo "k8s-binaries: (from https://kubernetes.io/releases/download/, 'Server binaries') in $dir/" >&2
    echo "k8s-binaries: or any DIR/v$version/, and run with KAMAJI_K8S_BIN_DIR=DIR." >&2
    exit 1
  fi
  if ! echo "$(cat "$dir/$c.sha256")  $dir/$c.part" | sha256sum --check --status; then
    rm -f "$dir/$c.part" "$dir/$c.sha256"
    echo "k8s-binaries: $c v$version does not match its published SHA-256; not using it." >&2
    exit 1
  fi
  chmod 0755 "$dir/$c.part" && mv "$dir/$c.part" "$dir/$c"
done
echo "$cache"
