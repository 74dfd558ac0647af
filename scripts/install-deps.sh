#!/usr/bin/env bash
# Brings a bare machine to where `make demo` and `make test` run; idempotent, quiet when all is there.
#
# What each tool is for, and where it comes from on a machine that lacks it:
# - etcd, etcdctl: the state store and datastores of every test and the demo, at the supported
#   release in tools/etcd-build/VERSION (scripts/etcd.sh: built from the go.etcd.io/etcd Go modules,
#   cached). Not Debian's etcd-server/etcd-client: 3.4, out of support and open to CVE-2023-32082,
#   which kamajid refuses at registration. The tests find it in the cache, never on PATH.
# - protoc and the well-known types (google/protobuf/*.proto): the build scripts of kamaji-proto and
#   etcd-client, which imports descriptor.proto and struct.proto (Debian protobuf-compiler, and
#   libprotobuf-dev, only a Recommends of it, which --no-install-recommends drops: named here).
# - openssl: tests cross-check certificates and hashes with it (Debian openssl).
# - curl and ca-certificates: the checksum-verified download of release binaries, and the tests'
#   raw calls to a tenant apiserver as a node (Debian).
# - containerd and runc: the container runtime of the admin node whose kubelet runs tenant control
#   planes as pods, and of the worker-join test (Debian containerd, runc).
# - containernetworking-plugins: bridge, host-local, portmap and loopback, the admin node's pod
#   network (Debian; installs to /usr/lib/cni).
# - iptables, conntrack, iproute2: kube-proxy's Service rules and the node's bridge (Debian).
# - buildah: builds the images pods run, offline, from binaries built here (scripts/images.sh;
#   Debian buildah, which pulls in its storage and network configuration).
# - gcc, libc6-dev (its static libc.a) and binutils (strip): the static sandbox (pause) image,
#   compiled from the k8s.io/kubernetes module's pause.c as upstream builds it.
# - helm, CoreDNS and promtool: the chart's lint, template and install, the admin cluster's DNS,
#   and the parser of kamajid's metrics and its alert rules; the Konnectivity server and agent
#   and gofakes3, the S3-compatible server the backup tests use (scripts/go-tool.sh: built from
#   their Go modules at the versions in tools/upstream/PROGRAMS).
# - zip, gnupg: the provider's release archives and their detached signature (scripts/release.sh);
#   unzip: the release test reads an archive back. gnupg brings gpg-agent, which signing needs.
# - flock: one build of the Kubernetes programs at a time (Debian util-linux).
# - kubernetes-validate: rendered objects against the upstream schemas (PyPI).
# - terraform: the CLI the acceptance tests and the demo drive (built from its Go module, pinned).
# - tofu: OpenTofu, the other CLI the acceptance suites run under (scripts/tofu.sh: built from
#   the github.com/opentofu/opentofu Go module at tools/tofu-build/VERSION, cached).
# - kube-apiserver, kube-controller-manager, kube-scheduler, kubeadm, kubectl, kubelet: real tenant control
#   planes, the admin cluster of the Kubernetes-runtime tests, worker join, and what tests and the
#   demo talk to tenants with (scripts/k8s-binaries.sh: built from the k8s.io/kubernetes Go module,
#   cached per version). kubectl is also linked onto PATH when the machine has none.
# Go (1.26 on the machines this project builds on) is only a build tool for upstream programs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kamaji
say() { echo "install-deps: $*" >&2; }

# Pinned: the terraform built when none is on PATH. 1.8 is the newest release whose module
# builds from the module proxy alone (later ones replace internal modules with local paths).
TERRAFORM_VERSION=1.8.5

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/portmap ] \
  && [ -x /usr/lib/cni/loopback ] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/aarch64-linux-gnu/libc.a ] || missing+=(libc6-dev)
command -v strip >/dev/null 2>&1 || missing+=(binutils)
[ -e /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
command -v zip >/dev/null 2>&1 || missing+=(zip)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
command -v gpg-agent >/dev/null 2>&1 || missing+=(gnupg)

if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
    say "please install: ${missing[*]}"
    exit 1
  fi
fi

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  say "installing kubernetes-validate (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate 2>&1 | grep -v "Running pip as the 'root' user" || true
  command -v kubernetes-validate >/dev/null 2>&1 || { say "kubernetes-validate is not on PATH after pip install"; exit 1; }
fi

# A directory on PATH to link built tools into.
bin_on_path() {
  if [ -w /usr/local/bin ]; then echo /usr/local/bin; return; fi
  mkdir -p "$HOME/.local/bin"
  case ":$PATH:" in *":$HOME/.local/bin:"*) ;; *) say "add $HOME/.local/bin to PATH" ;; esac
  echo "$HOME/.local/bin"
}

if ! command -v terraform >/dev/null 2>&1; then
  command -v go >/dev/null 2>&1 || { say "terraform is not on PATH and there is no Go toolchain to build it with"; exit 1; }
  dest="$cache/tools/terraform-v$TERRAFORM_VERSION"
  if [ ! -x "$dest/terraform" ]; then
    say "no terraform on PATH: building terraform v$TERRAFORM_VERSION from its Go module (a few minutes)"
    mkdir -p "$dest"
    GOBIN="$dest" CGO_ENABLED=0 go install -trimpath \
      -ldflags "-s -w -X github.com/hashicorp/terraform/version.dev=no" \
      "github.com/hashicorp/terraform@v$TERRAFORM_VERSION"
  fi
  ln -sf "$dest/terraform" "$(bin_on_path)/terraform"
  say "terraform: $("$dest/terraform" version | head -n 1)"
fi

# etcd at the supported release the tests and the demo run (a minute the first time).
"$root/scripts/etcd.sh" >/dev/null

# The Kubernetes versions the tests run (an older and a newer minor, for the upgrade test);
# the newest is the quickstart's. Built once per machine, reused after.
for v in $(grep -v '^#' "$root/tools/k8s-build/VERSIONS"); do
  "$root/scripts/k8s-binaries.sh" "$v" >/dev/null
done

# kubectl for users of the demo's kubeconfigs, when the machine has none: the newest built one.
newest=$(grep -v '^#' "$root/tools/k8s-build/VERSIONS" | tail -n 1)
if ! command -v kubectl >/dev/null 2>&1; then
  ln -sf "$cache/k8s/v$newest/kubectl" "$(bin_on_path)/kubectl"
  say "kubectl: linked v$newest onto PATH"
fi

# helm (the chart's checks and installs), CoreDNS (the admin node's DNS image) and promtool
# (parses kamajid's metrics and checks the alert rules shipped with the chart).
"$root/scripts/go-tool.sh" helm >/dev/null
"$root/scripts/go-tool.sh" coredns >/dev/null
"$root/scripts/go-tool.sh" promtool >/dev/null
# The Konnectivity server (beside tenant apiservers with network.konnectivity) and agent (what
# the tunnel's test runs inside a network namespace): sigs.k8s.io/apiserver-network-proxy.
"$root/scripts/go-tool.sh" konnectivity-server >/dev/null
"$root/scripts/go-tool.sh" konnectivity-agent >/dev/null
# An S3-compatible server (gofakes3) the backup tests store archives in, on loopback.
"$root/scripts/go-tool.sh" gofakes3 >/dev/null

tofu_bin=$("$root/scripts/tofu.sh")
[ -x "$tofu_bin" ] || { say "OpenTofu is not available"; exit 1; }
