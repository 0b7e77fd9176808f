#!/usr/bin/env bash
# The chart library the hub embeds (ui/vendor/) is a byte-for-byte copy of files of the npm
# package locked in package-lock.json. `ui/vendor.sh` copies them from node_modules (run
# `npm ci` first); `ui/vendor.sh --check` fails when a copy differs, so the embedded files are
# always reproducible from the lockfile.
set -euo pipefail
cd "$(dirname "$0")"
FILES=(uplot/dist/uPlot.esm.js uplot/dist/uPlot.min.css)
locked=$(node -e 'console.log(require("./package-lock.json").packages["node_modules/uplot"].version)')
installed=$(node -e 'console.log(require("./node_modules/uplot/package.json").version)')
if [ "$locked" != "$installed" ]; then
  echo "ui/node_modules has uplot $installed but package-lock.json locks $locked: run npm ci in ui/" >&2
  exit 1
fi
status=0
for file in "${FILES[@]}"; do
  target="vendor/$(basename "$file")"
  if [ "${1:-}" = --check ]; then
    if ! cmp -s "node_modules/$file" "$target"; then
      echo "ui/$target differs from node_modules/$file of uplot $locked: run ui/vendor.sh and commit" >&2
      status=1
    fi
  else
    mkdir -p vendor
    cp "node_modules/$file" "$target"
    echo "ui/$target <- uplot $locked"
  fi
done
exit $status
