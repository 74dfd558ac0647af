#!/usr/bin/env bash
# Every Kubernetes manifest we ship must pass the upstream schemas, strictly, for each
# Kubernetes version we support.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
versions=${KUBERNETES_VERSIONS:-"1.33.0 1.34.0 1.35.0 1.36.0 1.37.0"}
for v in $versions; do
  kubernetes-validate --quiet --strict --kubernetes-version "$v" "$root"/daemon/deploy/*.yaml
done
echo "manifests: valid for Kubernetes $versions"
