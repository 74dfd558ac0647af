#!/usr/bin/env bash
# Provides an upstream program listed in tools/upstream/PROGRAMS, built from its Go module at
# the version named there, into CACHE/<name>-<version>/<name> once per machine and reused after.
# Prints the path of the binary on stdout; progress goes to stderr.
#
# `go install module/cmd@version` is refused for modules whose go.mod replaces other modules
# with local paths; a small build module requires the module (keeping upstream's non-local
# replaces) and builds its main package, statically (CGO off).
#
#   usage: scripts/go-tool.sh NAME
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:?usage: go-tool.sh NAME}
line=$(grep -v '^#' "$root/tools/upstream/PROGRAMS" | awk -v n="$name" '$1 == n' | head -n 1)
[ -n "$line" ] || { echo "go-tool: $name is not in tools/upstream/PROGRAMS" >&2; exit 2; }
read -r _ module version pkg <<<"$line"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kamaji/tools
dir="$cache/$name-$version"
say() { echo "go-tool: $*" >&2; }
mkdir -p "$cache"
exec 9>"$cache/.lock-$name-$version"
flock 9
if [ -x "$dir/$name" ] && [ -f "$dir/SOURCE" ]; then echo "$dir/$name"; exit 0; fi

command -v go >/dev/null 2>&1 || { say "no Go toolchain on PATH to build $name with"; exit 1; }
work="$cache/build/$name-$version"
mkdir -p "$work" "$dir"
start=$SECONDS
say "building $name $version from the $module Go module (a few minutes the first time)"
upstream=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module@$version" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$upstream" ] || { say "cannot download $module@$version from the Go module proxy"; exit 1; }
{
  echo "module kamaji.local/$name-build"
  echo
  echo "go $(sed -n 's/^go \(.*\)/\1/p' "$upstream")"
  echo
  echo "require $module $version"
  echo
  grep -E '^replace [^ ]+( v[^ ]+)? => [^ ./][^ ]* v' "$upstream" || true
} >"$work/go.mod"
cat >"$work/tools.go" <<GO
//go:build tools

package tools

import _ "$pkg"
GO
rm -f "$work/go.sum"
if ! (cd "$work" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod tidy >"$work/tidy.log" 2>&1); then
  grep -v '^go: downloading' "$work/tidy.log" >&2 || true
  say "resolving the build module ($work/go.mod) failed"; exit 1
fi
if ! (cd "$work" && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" \
      -o "$dir/$name" "$pkg"); then
  say "building $name $version failed"; exit 1
fi
echo "built from $module $version with $(go env GOVERSION) in $(( SECONDS - start )) s" >"$dir/SOURCE"
say "built $name $version in $(( SECONDS - start )) s"
echo "$dir/$name"
