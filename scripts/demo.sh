#!/usr/bin/env bash
# The main job on an embedded default: make a sample memory card, ingest it into a local library
# (verified by read-back, journaled, with an ASC MHL manifest), then re-verify the library.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# Under a second: the program always matches the sources.
npm run --silent build
demo=${1:-.tmp/demo}
rm -rf "$demo"
npx shuttle sample "$demo/card"
npx shuttle --state "$demo/state" ingest "$demo/card" --dest "$demo/library"
npx shuttle verify "$demo/library"
echo "library: $demo/library   journal: $demo/state   (try: npx shuttle --state $demo/state status)"
