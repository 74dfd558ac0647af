#!/bin/sh
# Lays out kamajid's image root from a built binary: the binary at /usr/local/bin/kamajid, exactly
# the shared libraries it links (its loader, libc, libm, libgcc_s), and the non-root user 65532.
# Both image recipes use it: daemon/deploy/Dockerfile (where a registry is reachable) and
# scripts/images.sh (offline, from the binary this repository builds), so both images hold the
# same files.
#
#   usage: rootfs.sh KAMAJID_BINARY OUT_DIR
set -eu
bin=${1:?usage: rootfs.sh KAMAJID_BINARY OUT_DIR}
out=${2:?usage: rootfs.sh KAMAJID_BINARY OUT_DIR}
rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc" "$out/tmp"
chmod 1777 "$out/tmp"
cp "$bin" "$out/usr/local/bin/kamajid"
# Symbols stay (panics name their frames); debug information goes.
if command -v strip >/dev/null 2>&1; then strip --strip-debug "$out/usr/local/bin/kamajid"; fi
chmod 0755 "$out/usr/local/bin/kamajid"
# Each library as ldd resolves it, at the same path, symlinks followed.
for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done
echo "nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin" >"$out/etc/passwd"
echo "nonroot:x:65532:" >"$out/etc/group"
