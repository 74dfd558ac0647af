#!/usr/bin/env bash
# kamajid's Helm chart must lint, and what it renders must pass the upstream schemas, strictly,
# for each Kubernetes version we support: with its defaults (bundled state etcd, generated
# secrets) and as a production install sets it (an external state etcd, existing secrets,
# a NodePort, persistence).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chart="$root/daemon/deploy/chart/kamajid"
versions=${KUBERNETES_VERSIONS:-"1.33.0 1.34.0 1.35.0 1.36.0 1.37.0"}
helm=$("$root/scripts/go-tool.sh" helm)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$helm" lint --strict "$chart" >"$work/lint.log" 2>&1 || { cat "$work/lint.log" >&2; exit 1; }
"$helm" template kamajid "$chart" --namespace kamaji-system >"$work/defaults.yaml"
"$helm" template kamajid "$chart" --namespace kamaji-system \
  --set replicas=3 \
  --set service.type=NodePort --set service.nodePort=31443 \
  --set tls.existingSecret=kamajid-tls --set tokens.existingSecret=kamajid-tokens \
  --set kek.existingSecret=kamajid-kek \
  --set 'stateEtcd.endpoints={https://etcd-0.example:2379,https://etcd-1.example:2379}' \
  --set stateEtcd.existingSecret=kamajid-state-etcd \
  --set nodeSelector.role=control-planes \
  --set 'tolerations[0].key=control-planes' --set 'tolerations[0].operator=Exists' \
  --set 'tolerations[0].effect=NoSchedule' \
  --set issuer.enabled=true --set issuer.baseUrl=https://oidc.example.com/kamaji \
  --set 'config.servedVersions={1.36.3,1.37.2}' \
  >"$work/production.yaml"
grep -q "name: kamajid-issuer$" "$work/production.yaml" || { echo "manifests: no issuer Service" >&2; exit 1; }
grep -A1 "KAMAJID_SERVED_VERSIONS" "$work/production.yaml" | grep -q '"1.36.3,1.37.2"' \
  || { echo "manifests: served versions not passed to kamajid" >&2; exit 1; }
"$helm" template kamajid "$chart" --namespace kamaji-system \
  --set stateEtcd.bundled.persistence.enabled=true >"$work/persistent.yaml"
# A required value left out is refused with what to set.
if "$helm" template kamajid "$chart" --set 'stateEtcd.endpoints={https://e:2379}' >/dev/null 2>"$work/err"; then
  echo "manifests: stateEtcd.endpoints without stateEtcd.existingSecret rendered" >&2; exit 1
fi
grep -q "stateEtcd.existingSecret is required" "$work/err" || { cat "$work/err" >&2; exit 1; }
if "$helm" template kamajid "$chart" --set issuer.enabled=true >/dev/null 2>"$work/err"; then
  echo "manifests: issuer.enabled without issuer.baseUrl rendered" >&2; exit 1
fi
grep -q "issuer.baseUrl is required" "$work/err" || { cat "$work/err" >&2; exit 1; }

# The monitoring objects (prometheus-operator's kinds, outside the upstream schemas): rendered
# when asked for, the alerts as promtool checks and tests them, the dashboard as JSON.
"$helm" template kamajid "$chart" --namespace kamaji-system \
  --set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true \
  --set metrics.grafanaDashboard.enabled=true >"$work/monitoring.yaml"
for kind in ServiceMonitor PrometheusRule; do
  grep -q "^kind: $kind$" "$work/monitoring.yaml" || { echo "manifests: no $kind rendered" >&2; exit 1; }
done
grep -q 'summary: Datastore {{ $labels.datastore }}' "$work/monitoring.yaml" \
  || { echo "manifests: the PrometheusRule lost its alerts' templates" >&2; exit 1; }
promtool=$("$root/scripts/go-tool.sh" promtool)
"$promtool" check rules "$chart/files/alerts.yaml" >/dev/null
(cd "$chart/files" && "$promtool" test rules alerts_test.yaml >/dev/null)
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$chart/files/dashboard.json"

for v in $versions; do
  kubernetes-validate --quiet --strict --kubernetes-version "$v" \
    "$work/defaults.yaml" "$work/production.yaml" "$work/persistent.yaml"
done
echo "chart: lints, renders objects valid for Kubernetes $versions; its alerts pass promtool's checks and tests"
