#!/usr/bin/env bash
# Provides OpenTofu (`tofu`) at the version in tools/tofu-build/VERSION (or $1), built from the
# github.com/opentofu/opentofu Go module into CACHE/tofu-vVERSION/ once per machine and reused
# after. Prints the path of the `tofu` binary on stdout; progress goes to stderr.
#
# `go install github.com/opentofu/opentofu/cmd/tofu@vX` is refused because OpenTofu's go.mod
# replaces hashicorp/hcl with its own fork; a small build module copies upstream's replace lines
# and builds the same main package (about 5 minutes on two cores, less with a warm Go cache).
#
#   usage: scripts/tofu.sh [VERSION]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${1:-$(grep -v '^#' "$root/tools/tofu-build/VERSION" | head -n 1)}
version=${version#v}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kamaji/tools
dir="$cache/tofu-v$version"
say() { echo "tofu: $*" >&2; }

if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  say "$version is not an OpenTofu release such as 1.12.6"; exit 2
fi
mkdir -p "$cache"
exec 9>"$cache/.lock-tofu-v$version"
flock 9

reported() { "$1" version 2>/dev/null | sed -n 's/^OpenTofu v\([^ ]*\).*/\1/p' | head -n 1; }
if [ -x "$dir/tofu" ] && [ "$(reported "$dir/tofu")" = "$version" ]; then
  echo "$dir/tofu"; exit 0
fi

command -v go >/dev/null 2>&1 || { say "no Go toolchain on PATH to build OpenTofu with"; exit 1; }
work="$cache/build/tofu-v$version"
mkdir -p "$work" "$dir"
start=$SECONDS
say "building tofu v$version from the github.com/opentofu/opentofu Go module (a few minutes)"
upstream=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/opentofu/opentofu@v$version" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$upstream" ] || { say "cannot download github.com/opentofu/opentofu@v$version from the Go module proxy"; exit 1; }
{
  echo "module kamaji.local/tofu-build"
  echo
  echo "go $(sed -n 's/^go \(.*\)/\1/p' "$upstream")"
  echo
  echo "require github.com/opentofu/opentofu v$version"
  echo
  # Upstream's own replace lines (single-line form), so the module graph is the one it releases.
  grep -E '^replace [^ ]+( v[^ ]+)? => [^ ]+ v' "$upstream" || true
} >"$work/go.mod"
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/opentofu/opentofu/cmd/tofu"
GO
rm -f "$work/go.sum"
if ! (cd "$work" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod tidy >"$work/tidy.log" 2>&1); then
  grep -v '^go: downloading' "$work/tidy.log" >&2 || true
  say "resolving the build module ($work/go.mod) failed"; exit 1
fi
if ! (cd "$work" && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath \
      -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" \
      -o "$dir/tofu" github.com/opentofu/opentofu/cmd/tofu); then
  say "building tofu v$version failed"; exit 1
fi
[ "$(reported "$dir/tofu")" = "$version" ] || { say "$dir/tofu does not report v$version"; exit 1; }
echo "built from github.com/opentofu/opentofu v$version with $(go env GOVERSION) in $(( SECONDS - start )) s" >"$dir/SOURCE"
say "built tofu v$version in $(( SECONDS - start )) s"
echo "$dir/tofu"
