#!/usr/bin/env bash
# Recompresses the .gz files `cargo leptos build --precompress` writes beside the site's static
# files with gzip -9: cargo-leptos's own are about 14 % larger (main wasm 108,076 B against
# 93,583 B, measured 2026-12-04), and browsers that take gzip get these as they are.
# Usage: scripts/lib/regzip.sh SITE_DIR
set -euo pipefail
site=${1:?usage: scripts/lib/regzip.sh SITE_DIR}
find "$site" -type f -name '*.gz' -print0 | while IFS= read -r -d '' gz; do
  plain=${gz%.gz}
  [[ -f "$plain" ]] || continue
  gzip -9 -n -c "$plain" >"$gz.tmp"
  mv "$gz.tmp" "$gz"
done
