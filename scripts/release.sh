#!/usr/bin/env bash
# Builds the provider's release as the Terraform Registry and a filesystem mirror expect:
#
#   OUT/terraform-provider-kamaji_<V>_<os>_<arch>.zip   the binary, named terraform-provider-kamaji_v<V>
#   OUT/terraform-provider-kamaji_<V>_manifest.json     terraform-registry-manifest.json (protocol 6.0)
#   OUT/terraform-provider-kamaji_<V>_SHA256SUMS        the digests of the above
#   OUT/terraform-provider-kamaji_<V>_SHA256SUMS.sig    a detached binary signature, by the GPG key
#                                                       named in GPG_KEY_ID (from the operator's keyring)
#   OUT/mirror/<host>/kamaji/kamaji/<zip>               a packed filesystem mirror, under the host names
#                                                       terraform (registry.terraform.io) and OpenTofu
#                                                       (registry.opentofu.org) resolve kamaji/kamaji to
#   OUT/terraformrc                                     a CLI configuration that installs from that mirror
#
# Environment: OUT (default dist/), VERSION (default: the workspace's), BINARY (default: a release
# build of the provider; the tests pass their debug build), GPG_KEY_ID (without it, no signature
# and a warning: the registry refuses an unsigned release), GNUPGHOME (gpg's own).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "release: $*" >&2; }
out=${OUT:-$root/dist}
version=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)}
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) say "unsupported machine $(uname -m)"; exit 1 ;;
esac
os=$(uname -s | tr '[:upper:]' '[:lower:]')
name=terraform-provider-kamaji
if [ -z "${BINARY:-}" ]; then
  (cd "$root" && cargo build --release --quiet -p terraform-provider-kamaji)
  BINARY=${CARGO_TARGET_DIR:-$root/target}/release/$name
fi
[ -x "$BINARY" ] || { say "no provider binary at $BINARY"; exit 1; }
for tool in zip sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || { say "$tool is missing (scripts/install-deps.sh installs it)"; exit 1; }
done

rm -rf "$out"
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$BINARY" "$stage/${name}_v$version"
cp "$root/LICENSE" "$stage/LICENSE"
zipname="${name}_${version}_${os}_${arch}.zip"
# Fixed timestamps, so the same binary gives the same archive and digest.
touch -d '2000-01-01T00:00:00Z' "$stage/${name}_v$version" "$stage/LICENSE"
(cd "$stage" && zip -q -X "$out/$zipname" "${name}_v$version" LICENSE)
cp "$root/terraform-registry-manifest.json" "$out/${name}_${version}_manifest.json"
(cd "$out" && sha256sum "$zipname" "${name}_${version}_manifest.json" >"${name}_${version}_SHA256SUMS")

if [ -n "${GPG_KEY_ID:-}" ]; then
  command -v gpg >/dev/null 2>&1 || { say "gpg is missing (scripts/install-deps.sh installs it)"; exit 1; }
  gpg --batch --yes --local-user "$GPG_KEY_ID" --detach-sign \
    --output "$out/${name}_${version}_SHA256SUMS.sig" "$out/${name}_${version}_SHA256SUMS"
  say "signed ${name}_${version}_SHA256SUMS with key $GPG_KEY_ID"
else
  say "GPG_KEY_ID is not set: SHA256SUMS is not signed (a registry refuses an unsigned release)"
fi

for host in registry.terraform.io registry.opentofu.org; do
  mkdir -p "$out/mirror/$host/kamaji/kamaji"
  cp "$out/$zipname" "$out/mirror/$host/kamaji/kamaji/$zipname"
done
cat >"$out/terraformrc" <<RC
# terraform and tofu: install kamaji/kamaji from this mirror, everything else as usual.
# Use it with TF_CLI_CONFIG_FILE=$out/terraformrc, or copy the block into ~/.terraformrc (~/.tofurc).
provider_installation {
  filesystem_mirror {
    path    = "$out/mirror"
    include = ["registry.terraform.io/kamaji/kamaji", "registry.opentofu.org/kamaji/kamaji"]
  }
  direct {
    exclude = ["registry.terraform.io/kamaji/kamaji", "registry.opentofu.org/kamaji/kamaji"]
  }
}
RC
say "$name $version for ${os}_$arch in $out"
