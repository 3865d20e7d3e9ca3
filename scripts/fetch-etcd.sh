#!/usr/bin/env bash
# Debian's etcd 3.4 binaries (etcdctl for the end-to-end tests, etcd for bench/ and chaos/ to
# compare against), unpacked into .cache/etcd without installing anything: installing
# etcd-server could start a daemon on port 2379.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/etcd"
if [ -x "$dest/usr/bin/etcdctl" ] && [ -x "$dest/usr/bin/etcd" ]; then exit 0; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
if ! apt-get download etcd-client etcd-server >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get download etcd-client etcd-server >/dev/null
fi
mkdir -p "$dest"
for deb in ./*.deb; do dpkg -x "$deb" "$dest"; done
# Not `| head -1`: under pipefail, etcdctl writing its second line after head exited is a SIGPIPE,
# and a clean-clone CI run failed that way (npm test stopped at its pretest).
version="$("$dest/usr/bin/etcdctl" version)"
echo "${version%%$'\n'*}"
