#!/usr/bin/env bash
# Headless Chromium for the report test (tests/test_tools/test_job_report.py renders report.html in it).
# Idempotent: does nothing when a chromium binary is already on PATH. Needs root (apt-get) otherwise.
set -euo pipefail
for bin in chromium chromium-browser google-chrome; do
  if command -v "$bin" >/dev/null 2>&1; then
    echo "install_chromium: $bin already installed ($(command -v "$bin"))"
    exit 0
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  echo "install_chromium: chromium is missing and this is not root; run: sudo apt-get install -y chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium
command -v chromium
