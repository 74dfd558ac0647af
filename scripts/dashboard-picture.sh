#!/usr/bin/env bash
# Renders docs/guides/images/kamajid-dashboard.png, the picture in docs/guides/monitoring.md, from
# a real run: `make demo` (KEEP=1) with its two datastores and two tenant clusters, a real
# Prometheus (built from its Go module, scripts/go-tool.sh) scraping kamajid-dev's kamajid every
# 5 s with the chart's alerts loaded, some traffic (plans; a tenant created, refused, destroyed),
# then every panel of the shipped dashboard evaluated by that Prometheus (query_range) and drawn
# by scripts/dashboard-picture.py (matplotlib: Grafana is not available here). Not part of
# make test; MINUTES (default 10) is how long it records.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
minutes=${MINUTES:-10}
say() { echo "dashboard-picture: $*" >&2; }
prometheus=$("$root/scripts/go-tool.sh" prometheus)
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib
work=$(mktemp -d)
cleanup() {
  [ -f "$work/prometheus.pid" ] && kill "$(cat "$work/prometheus.pid")" 2>/dev/null || true
  "$root/scripts/demo-stop.sh" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

KEEP=1 "$root/scripts/demo.sh" >"$work/demo.log" 2>&1 || { cat "$work/demo.log" >&2; exit 1; }
cp "$root/daemon/deploy/chart/kamajid/files/alerts.yaml" "$work/alerts.yaml"
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files: [alerts.yaml]
scrape_configs:
  - job_name: kamajid
    static_configs: [{targets: ["127.0.0.1:7449"]}]
YML
"$prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address=127.0.0.1:9099 >"$work/prometheus.log" 2>&1 &
echo $! >"$work/prometheus.pid"
start=$(date +%s)
say "recording for $minutes minutes"

# Traffic: re-plans (API calls), and halfway a tenant created and destroyed, and one refused.
# shellcheck disable=SC1091
source "$root/.demo/env"
export TF_CLI_CONFIG_FILE="$root/.demo/terraformrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
extra="$work/extra"
mkdir -p "$extra"
version=$(grep -v '^#' "$root/tools/k8s-build/VERSIONS" | tail -n 1)
cat >"$extra/main.tf" <<TF
terraform {
  required_providers {
    kamaji = { source = "kamaji/kamaji" }
  }
}
variable "refused" {
  type    = bool
  default = false
}
resource "kamaji_tenant_cluster" "extra" {
  name               = var.refused ? "nowhere" : "extra"
  kubernetes_version = "$version"
  datastore_selector = var.refused ? { zone = "mars" } : {}
}
TF
end=$(( start + minutes * 60 ))
half=$(( start + minutes * 30 ))
did_extra=0
while [ "$(date +%s)" -lt "$end" ]; do
  (cd "$root/.demo/quickstart" && terraform plan -input=false -var-file="$root/.demo/quickstart.tfvars.json" >/dev/null 2>&1) || true
  if [ "$did_extra" = 0 ] && [ "$(date +%s)" -ge "$half" ]; then
    did_extra=1
    (cd "$extra" && terraform apply -auto-approve -input=false >/dev/null 2>&1 \
      && sleep 60 && terraform destroy -auto-approve -input=false >/dev/null 2>&1) || say "the extra tenant failed"
    (cd "$extra" && terraform apply -auto-approve -input=false -var refused=true -state="$work/refused.tfstate" >/dev/null 2>&1) || true
  fi
  sleep 20
done

python3 "$root/scripts/dashboard-picture.py" http://127.0.0.1:9099 \
  "$root/daemon/deploy/chart/kamajid/files/dashboard.json" "$start" "$(date +%s)" \
  "$root/docs/guides/images/kamajid-dashboard.png"
curl -s http://127.0.0.1:9099/api/v1/alerts >"$work/alerts.json"
say "alerts firing or pending at the end: $(python3 -c 'import json,sys; print([a["labels"]["alertname"] for a in json.load(open(sys.argv[1]))["data"]["alerts"]])' "$work/alerts.json")"
say "wrote docs/guides/images/kamajid-dashboard.png"
