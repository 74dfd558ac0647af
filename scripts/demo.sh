#!/usr/bin/env bash
# make demo: start a local secured environment (state etcd, two etcd datastores, kamajid) with
# `kamajid-dev`, `terraform apply` examples/quickstart against it with the freshly built
# provider, show each tenant answering kubectl, re-plan (no changes) and destroy. KEEP=1 leaves
# the environment running afterwards (stop it with `make demo-stop`).
#
# make demo-cluster (SHAPE=cluster): the production shape instead. `kamaji-demo-cluster` starts
# an admin cluster whose node runs pods (containerd, kubelet, kube-proxy, CoreDNS; images built
# here by scripts/images.sh), two etcd datastores and kamajid installed by its Helm chart; the
# quickstart's tenants run as pods. Left running (KEEP=0 destroys); `make demo-stop` ends it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shape=${SHAPE:-local}
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
start=$SECONDS

"$root/scripts/demo-stop.sh" >/dev/null 2>&1 || true
if [ "$shape" = cluster ]; then
  dir="$root/.demo-cluster"
  KEEP=${KEEP:-1}
  mkdir -p "$dir"
  echo "demo: building the images the admin node runs (scripts/images.sh; minutes the first time)"
  "$root/scripts/images.sh" build >/dev/null
  echo "demo: starting the admin cluster, its node and kamajid from its chart (log: $dir/cluster.log)"
  "$bin/kamaji-demo-cluster" --dir "$dir" >"$dir/cluster.log" 2>&1 &
  echo $! >"$dir/cluster.pid"
  trap '[ "${KEEP:-0}" = 1 ] || "$root/scripts/demo-stop.sh" 2>/dev/null || true' EXIT
  shown=0
  for _ in $(seq 1 1200); do
    [ -f "$dir/ready" ] && break
    if ! kill -0 "$(cat "$dir/cluster.pid")" 2>/dev/null; then
      echo "demo: kamaji-demo-cluster exited; its log:" >&2; cat "$dir/cluster.log" >&2; exit 1
    fi
    lines=$(wc -l <"$dir/cluster.log")
    if [ "$lines" -gt "$shown" ]; then sed -n "$((shown + 1)),${lines}p" "$dir/cluster.log"; shown=$lines; fi
    sleep 0.5
  done
  [ -f "$dir/ready" ] || { echo "demo: the admin cluster is not ready; see $dir/cluster.log" >&2; exit 1; }
  newest=$(grep -v '^#' "$root/tools/k8s-build/VERSIONS" | tail -n 1)
  kubectl="$("$root/scripts/k8s-binaries.sh" "$newest")/v$newest/kubectl"
else
dir="$root/.demo"
mkdir -p "$dir"
# Tenant control planes run in an admin cluster (KAMAJID_KUBECONFIG) or, without one, as local
# processes of the upstream binaries: KAMAJI_K8S_BIN_DIR, else scripts/k8s-binaries.sh (reused
# from the cache, downloaded and checksum-verified, or built from the Go module: minutes, once).
version=$(sed -n '/variable "kubernetes_version"/,/}/s/.*default *= *"\(.*\)".*/\1/p' "$root/examples/quickstart/main.tf")
kubectl=kubectl
if [ -z "${KAMAJID_KUBECONFIG:-}" ]; then
  if [ -z "${KAMAJI_K8S_BIN_DIR:-}" ]; then
    echo "demo: getting the Kubernetes v$version programs (scripts/k8s-binaries.sh)"
    KAMAJI_K8S_BIN_DIR=$("$root/scripts/k8s-binaries.sh" "$version") || {
      echo "demo: no Kubernetes v$version binaries (see above), so no tenant can run here." >&2
      echo "demo: give an admin cluster (KAMAJID_KUBECONFIG=...) or KAMAJI_K8S_BIN_DIR=DIR with DIR/v$version/." >&2
      exit 1
    }
  fi
  export KAMAJI_K8S_BIN_DIR
  echo "demo: tenant control planes run as local processes from $KAMAJI_K8S_BIN_DIR/v$version"
  [ -x "$KAMAJI_K8S_BIN_DIR/v$version/kubectl" ] && kubectl="$KAMAJI_K8S_BIN_DIR/v$version/kubectl"
fi
"$bin/kamajid-dev" --dir "$dir" --datastores 2 >"$dir/kamajid.log" 2>&1 &
echo $! >"$dir/kamajid.pid"
# Never leave the environment running after a failure (KEEP=1 keeps it on purpose).
trap '[ "${KEEP:-0}" = 1 ] || "$root/scripts/demo-stop.sh" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  [ -f "$dir/ready" ] && break
  if ! kill -0 "$(cat "$dir/kamajid.pid")" 2>/dev/null; then
    echo "demo: kamajid-dev exited; its log:" >&2; cat "$dir/kamajid.log" >&2; exit 1
  fi
  sleep 0.3
done
[ -f "$dir/ready" ] || { echo "demo: environment not ready; see $dir/kamajid.log" >&2; exit 1; }
fi

cat >"$dir/terraformrc" <<RC
provider_installation {
  dev_overrides {
    "kamaji/kamaji" = "$bin"
  }
  direct {}
}
RC
work="$dir/quickstart"
rm -rf "$work" && mkdir -p "$work" && cp "$root/examples/quickstart/"*.tf "$work/"
# shellcheck disable=SC1091
source "$dir/env"
export TF_CLI_CONFIG_FILE="$dir/terraformrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
cd "$work"
echo "demo: terraform apply (two datastores, two tenant clusters)"
terraform apply -auto-approve -input=false -var-file="$dir/quickstart.tfvars.json"
echo
# Each tenant answers kubectl with the admin kubeconfig the apply returned.
terraform output -json kubeconfigs >"$dir/kubeconfigs.json"
chmod 0600 "$dir/kubeconfigs.json"
for name in $(python3 -c 'import json,sys; print(" ".join(sorted(json.load(open(sys.argv[1])))))' "$dir/kubeconfigs.json"); do
  python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$dir/kubeconfigs.json" "$name" >"$dir/$name.kubeconfig"
  chmod 0600 "$dir/$name.kubeconfig"
  if [ "$shape" = cluster ]; then
    echo "demo: kubectl --kubeconfig $dir/admin.kubeconfig get pods -n tenant-$name -o wide"
    "$kubectl" --kubeconfig "$dir/admin.kubeconfig" get pods -n "tenant-$name" -o wide
  fi
  echo "demo: kubectl --kubeconfig $dir/$name.kubeconfig get ns"
  "$kubectl" --kubeconfig "$dir/$name.kubeconfig" get ns
  echo
done
echo
echo "demo: re-planning to show nothing drifts:"
if terraform plan -detailed-exitcode -input=false -var-file="$dir/quickstart.tfvars.json" >"$dir/replan.log" 2>&1; then
  echo "demo: no changes."
else
  echo "demo: the re-plan is not empty (or failed):" >&2; cat "$dir/replan.log" >&2; exit 1
fi

if [ "${KEEP:-0}" = 1 ]; then
  echo "demo: environment left running. source $dir/env; state in $work; stop with: make demo-stop"
else
  terraform destroy -auto-approve -input=false -var-file="$dir/quickstart.tfvars.json" >/dev/null
  rm -f "$dir"/*.kubeconfig "$dir/kubeconfigs.json"
  echo "demo: destroyed (tenant control planes, etcd users, roles and keys gone). Took $(( SECONDS - start )) s."
fi
