#!/usr/bin/env bash
# Make `promtool` available for the alert-rule tests (tests/helm/test_prometheus_rules.py).
#
# No PyPI or npm package ships promtool. Debian's (and Ubuntu's) `prometheus` package does, as
# /usr/bin/promtool, a static Go binary that needs only libc. This script `apt-get download`s
# that package (a download needs no root and installs nothing) into a cache folder and extracts
# promtool next to the venv's Python, as scripts/fetch-helm.sh does for helm. When apt has no
# package list yet and the user is root, it runs `apt-get update` once first. Idempotent:
# nothing happens when promtool is already on PATH or already extracted.
#
# Usage: scripts/fetch-promtool.sh [DEST_DIR]     (default: .venv/bin)
# Env:   PROMTOOL_CACHE (default: .venv/.cache/promtool)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.venv/bin}"
CACHE="${PROMTOOL_CACHE:-$ROOT/.venv/.cache/promtool}"

if [ -x "$DEST/promtool" ]; then
  exit 0
fi
if command -v promtool >/dev/null 2>&1; then
  echo "fetch-promtool: using $(command -v promtool)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "fetch-promtool: no apt-get/dpkg-deb here; install Prometheus' promtool and put it on PATH" >&2
  exit 1
fi

mkdir -p "$CACHE" "$DEST"
if ! ls "$CACHE"/prometheus_*.deb >/dev/null 2>&1; then
  echo "fetch-promtool: promtool not on PATH; downloading Debian's prometheus package into $CACHE"
  if ! (cd "$CACHE" && apt-get download prometheus >/dev/null 2>&1); then
    if [ "$(id -u)" = 0 ]; then
      apt-get update >/dev/null
      (cd "$CACHE" && apt-get download prometheus >/dev/null 2>&1)
    else
      echo "fetch-promtool: apt-get download prometheus failed (run 'apt-get update' as root?)" >&2
      exit 1
    fi
  fi
fi
DEB="$(ls -t "$CACHE"/prometheus_*.deb | head -n 1)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$TMP" ./usr/bin/promtool
install -m 0755 "$TMP/usr/bin/promtool" "$DEST/promtool.part"
mv "$DEST/promtool.part" "$DEST/promtool"
echo "fetch-promtool: installed $("$DEST/promtool" --version 2>&1 | head -n 1) at $DEST/promtool"
