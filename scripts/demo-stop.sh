#!/usr/bin/env bash
# Stops the environment `make demo` started: the tenant control planes, then kamajid-dev (which
# ends its etcd processes itself).
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/.demo"

# Ends the processes the tenants' PID files name: TERM, up to $1 tenths of a second for
# kube-apiserver's graceful shutdown, then KILL.
stop_tenants() {
  local pids=() alive=() f pid
  for f in "$dir"/tenants/*/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f"); rm -f "$f"
    kill "$pid" 2>/dev/null && pids+=("$pid")
  done
  for _ in $(seq 1 "$1"); do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${alive[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}

# Local tenant control planes outlive kamajid by design; the demo's go with it, before their etcd
# does (an apiserver whose etcd is gone hangs in its graceful shutdown).
stop_tenants 150
if [ -f "$dir/kamajid.pid" ]; then
  pid=$(cat "$dir/kamajid.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$dir/kamajid.pid"
  echo "demo: stopped."
fi
# Whatever kamajid's supervisor restarted meanwhile.
stop_tenants 10

# The production-shaped demo (make demo-cluster): kamaji-demo-cluster stops its node (pods,
# containerd, kube-proxy's rules, the bridge), kamajid's release with it, the admin cluster and
# the datastores when it is told to.
cluster="$(dirname "$dir")/.demo-cluster"
if [ -f "$cluster/cluster.pid" ]; then
  pid=$(cat "$cluster/cluster.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$cluster/cluster.pid" "$cluster/ready" "$cluster"/*.kubeconfig "$cluster/kubeconfigs.json"
  echo "demo-cluster: stopped."
fi
