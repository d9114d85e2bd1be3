#!/usr/bin/env bash
# The upload page end to end in headless Chromium (e2e/upload.mjs): installs what is
# missing on a clean machine (Debian's chromium, Node.js and npm, playwright-core
# from e2e/package-lock.json), builds the intake binary and runs the script, which
# saves docs/screenshot.png.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The page test reads the embedded store's index to see stored parts.
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
# A font, so that the screenshot shows text (chromium recommends one; be explicit).
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "e2e: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# playwright-core only: it drives the system Chromium and downloads no browser.
if [ ! -d e2e/node_modules/playwright-core ]; then
  (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
fi

cargo build --bin intake
target_dir="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
INTAKE_BIN="$target_dir/debug/intake" node e2e/upload.mjs
