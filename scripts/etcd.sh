#!/usr/bin/env bash
# Provides etcd and etcdctl at the version in tools/etcd-build/VERSION (or $1), built from the
# go.etcd.io/etcd/server/v3 and go.etcd.io/etcd/etcdctl/v3 Go modules into CACHE/etcd-vVERSION/
# once per machine and reused after. Prints that directory on stdout; progress goes to stderr.
#
# Debian ships etcd 3.4, out of support and open to CVE-2023-32082 (a tenant's certificate lists
# other tenants' key names through leases): the tests and the demo run a supported etcd instead.
# `go install go.etcd.io/etcd/server/v3@vX` is refused because etcd's modules replace each other
# with local paths; a small build module requires both main packages at the same version.
#
#   usage: scripts/etcd.sh [VERSION]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${1:-$(grep -v '^#' "$root/tools/etcd-build/VERSION" | head -n 1)}
version=${version#v}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kamaji/tools
dir="$cache/etcd-v$version"
say() { echo "etcd: $*" >&2; }

if ! [[ "$version" =~ ^3\.[0-9]+\.[0-9]+$ ]]; then
  say "$version is not an etcd release such as 3.6.16"; exit 2
fi
mkdir -p "$cache"
exec 9>"$cache/.lock-etcd-v$version"
flock 9

# `etcd --version` prints "etcd Version: 3.6.16", `etcdctl version` "etcdctl version: 3.6.16".
reported() { "$1" "$2" 2>/dev/null | sed -n 's/^etcd\(ctl\)\{0,1\} [Vv]ersion: \([^ ]*\)$/\2/p' | head -n 1; }
complete() {
  [ -x "$dir/etcd" ] && [ -x "$dir/etcdctl" ] \
    && [ "$(reported "$dir/etcd" --version)" = "$version" ] && [ "$(reported "$dir/etcdctl" version)" = "$version" ]
}
if complete; then echo "$dir"; exit 0; fi

command -v go >/dev/null 2>&1 || { say "no Go toolchain on PATH to build etcd with"; exit 1; }
work="$cache/build/etcd-v$version"
mkdir -p "$work" "$dir"
start=$SECONDS
say "building etcd and etcdctl v$version from the go.etcd.io/etcd Go modules (a few minutes)"
upstream=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "go.etcd.io/etcd/server/v3@v$version" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$upstream" ] || { say "cannot download go.etcd.io/etcd/server/v3@v$version from the Go module proxy"; exit 1; }
cat >"$work/go.mod" <<MOD
module kamaji.local/etcd-build

go $(sed -n 's/^go \(.*\)/\1/p' "$upstream")

require (
	go.etcd.io/etcd/server/v3 v$version
	go.etcd.io/etcd/etcdctl/v3 v$version
)
MOD
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
GO
rm -f "$work/go.sum"
if ! (cd "$work" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod tidy >"$work/tidy.log" 2>&1); then
  grep -v '^go: downloading' "$work/tidy.log" >&2 || true
  say "resolving the build module ($work/go.mod) failed"; exit 1
fi
for p in server etcdctl; do
  out=$([ "$p" = server ] && echo etcd || echo etcdctl)
  if ! (cd "$work" && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" \
        -o "$dir/$out" "go.etcd.io/etcd/$p/v3"); then
    say "building $out v$version failed"; exit 1
  fi
done
complete || { say "$dir does not hold etcd and etcdctl reporting v$version"; exit 1; }
echo "built from go.etcd.io/etcd v$version with $(go env GOVERSION) in $(( SECONDS - start )) s" >"$dir/SOURCE"
say "built etcd v$version in $(( SECONDS - start )) s"
echo "$dir"
