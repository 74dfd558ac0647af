#!/usr/bin/env bash
# make demo: start a local secured environment (state etcd, two etcd datastores, kamajid) with
# `kamajid dev`, then `terraform apply` examples/quickstart against it with the freshly built
# provider. KEEP=1 leaves the environment running afterwards (stop it with `make demo-stop`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.demo"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

"$root/scripts/demo-stop.sh" >/dev/null 2>&1 || true
mkdir -p "$dir"
# Tenant control planes run in an admin cluster (KAMAJID_KUBECONFIG) or, without one, as local
# processes of the official binaries (KAMAJI_K8S_BIN_DIR, else downloaded and checksum-verified).
version=$(sed -n '/variable "kubernetes_version"/,/}/s/.*default *= *"\(.*\)".*/\1/p' "$root/examples/quickstart/main.tf")
if [ -z "${KAMAJID_KUBECONFIG:-}" ] && [ -z "${KAMAJI_K8S_BIN_DIR:-}" ]; then
  if KAMAJI_K8S_BIN_DIR=$("$root/scripts/k8s-binaries.sh" "$version"); then
    export KAMAJI_K8S_BIN_DIR
    echo "demo: tenant control planes run as local processes from $KAMAJI_K8S_BIN_DIR/v$version"
  else
    unset KAMAJI_K8S_BIN_DIR
  fi
fi
"$bin/kamajid" dev --dir "$dir" --datastores 2 >"$dir/kamajid.log" 2>&1 &
echo $! >"$dir/kamajid.pid"
# Never leave the environment running after a failure (KEEP=1 keeps it on purpose).
trap '[ "${KEEP:-0}" = 1 ] || "$root/scripts/demo-stop.sh" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  [ -f "$dir/ready" ] && break
  if ! kill -0 "$(cat "$dir/kamajid.pid")" 2>/dev/null; then
    echo "demo: kamajid dev exited; its log:" >&2; cat "$dir/kamajid.log" >&2; exit 1
  fi
  sleep 0.3
done
[ -f "$dir/ready" ] || { echo "demo: environment not ready; see $dir/kamajid.log" >&2; exit 1; }

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
if grep -q '"tenant_clusters": \[\]' "$dir/quickstart.tfvars.json"; then
  echo "demo: no admin cluster and no Kubernetes binaries, so the quickstart registers datastores only."
  echo "demo: for tenant clusters too, run with KAMAJID_KUBECONFIG=<admin cluster kubeconfig> make demo,"
  echo "demo: or KAMAJI_K8S_BIN_DIR=DIR make demo with kube-apiserver, kube-controller-manager and"
  echo "demo: kube-scheduler v$version in DIR/v$version/ (local processes; see docs/guides/local-runtime.md)."
fi
terraform apply -auto-approve -input=false -var-file="$dir/quickstart.tfvars.json"
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
  terraform destroy -auto-approve -input=false -var-file="$dir/quickstart.tfvars.json" >/dev/null && echo "demo: destroyed."
fi
