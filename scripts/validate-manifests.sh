#!/usr/bin/env bash
# Every Kubernetes manifest we ship must pass the upstream schemas, strictly, for each
# Kubernetes version we support.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
versions=${KUBERNETES_VERSIONS:-"1.30.0 1.31.0 1.32.0 1.33.0"}
for v in $versions; do
  kubernetes-validate --quiet --strict --kubernetes-version "$v" "$root"/daemon/deploy/*.yaml
done
echo "manifests: valid for Kubernetes $versions"
