#!/usr/bin/env bash
# Stops the environment `make demo` started (kamajid dev ends its etcd processes itself).
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/.demo"
if [ -f "$dir/kamajid.pid" ]; then
  pid=$(cat "$dir/kamajid.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$dir/kamajid.pid"
  echo "demo: stopped."
fi
# Local tenant control planes outlive kamajid by design; the demo's go with it.
for f in "$dir"/tenants/*/*.pid; do
  [ -f "$f" ] || continue
  kill "$(cat "$f")" 2>/dev/null || true
  rm -f "$f"
done
