#!/usr/bin/env bash
# Builds the kube-apiserver and etcd that the Kubernetes tests run, from their
# Go modules (hack/kube/apiserver, hack/kube/etcd), into a cache folder keyed
# by version, and reuses them when present. Prints the folder of each.
#
#   ORGPLANE_KUBE_CACHE  cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/orgplane/kube)
#
# A cold build of kube-apiserver takes 10-30 minutes on two cores and about
# 2.5 GiB of memory; with the binaries cached this script does nothing.
# The tests find the binaries by the same rule (internal/kubetest).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
cache=${ORGPLANE_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orgplane/kube}

# build NAME VERSION MODULE_DIR [LDFLAGS]: builds MODULE_DIR into
# $cache/NAME-VERSION/NAME unless it is there already. The binary appears
# under its final name only once complete (build to a temporary name, then
# rename), so an interrupted build is never taken for a cached one.
build() {
  local name=$1 version=$2 dir=$3 ldflags=${4:-}
  local out=$cache/$name-$version
  if [ -x "$out/$name" ]; then
    echo "$name $version: cached in $out"
    return
  fi
  mkdir -p "$out"
  echo "$name $version: building into $out"
  local start=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$name.tmp.$$" .)
  mv "$out/$name.tmp.$$" "$out/$name"
  echo "$name $version: built in $((SECONDS - start))s"
}

build etcd "$ETCD_VERSION" hack/kube/etcd
v=k8s.io/component-base/version
build kube-apiserver "$KUBE_VERSION" hack/kube/apiserver \
  "-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=37 -X $v.gitTreeState=clean"
