#!/usr/bin/env bash
# Screenshot a benchkit report.html with headless Chromium, offline (no network, no GPU, throwaway profile).
# usage: scripts/screenshot_report.sh REPORT.html [OUT.png] [WIDTHxHEIGHT]
set -euo pipefail
report=$(realpath "${1:?usage: $0 REPORT.html [OUT.png] [WIDTHxHEIGHT]}")
out=$(realpath -m "${2:-/tmp/benchkit_report.png}")
size=${3:-1400x2400}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "chromium not found (Debian: apt-get install -y chromium)" >&2
  exit 3
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
  --user-data-dir="$profile" --screenshot="$out" --window-size="${size/x/,}" "file://$report" \
  >/dev/null 2>&1
test -s "$out"
echo "$out"
