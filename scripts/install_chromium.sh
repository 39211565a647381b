#!/usr/bin/env bash
# Headless Chromium (Debian package `chromium`) for the report screenshot test
# (tests/analysis/test_screenshot.py). Does nothing when a Chromium is already installed;
# installs with apt-get as root (or through sudo when that works without a password).
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  command -v "$name" >/dev/null && exit 0
done
if [ "$(id -u)" = 0 ]; then
  run=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  run=(sudo -n)
else
  echo "install_chromium: no Chromium and no root to install it; run: apt-get install chromium" >&2
  exit 0  # the screenshot test then fails with the same advice (never a silent skip)
fi
echo "installing chromium (apt-get)" >&2
if ! "${run[@]}" apt-get install -y --no-install-recommends chromium >&2; then
  "${run[@]}" apt-get update >&2
  "${run[@]}" apt-get install -y --no-install-recommends chromium >&2
fi
