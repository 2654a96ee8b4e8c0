#!/usr/bin/env bash
# rootfs.sh BINARY SITE_DIR OUT: assembles the image's root filesystem in OUT: the binary (symbols
# stripped) and its hash.txt in /app, the site in /app/site, every shared library the binary links at the path the
# loader expects, /etc/passwd and /etc/group naming the non-root user 65532, and the empty
# directories the Deployment mounts over (/tmp, /var/lib/rollout-dashboard).
set -euo pipefail
bin=$1 site=$2 out=$3
rm -rf "$out"
mkdir -p "$out/app" "$out/etc" "$out/tmp" "$out/var/lib/rollout-dashboard" "$out/proc" "$out/dev" "$out/sys"
cp "$bin" "$out/app/rollout-dashboard"
strip "$out/app/rollout-dashboard"
# cargo-leptos writes the content hashes of the site's files next to the binary; with
# LEPTOS_HASH_FILES=true the server reads them there to name the hashed assets.
cp "$(dirname "$bin")/hash.txt" "$out/app/hash.txt"
cp -r "$site" "$out/app/site"
rm -f "$out/app/site/.gitkeep"
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done
echo "nonroot:x:65532:65532:rollout-dashboard:/app:/sbin/nologin" >"$out/etc/passwd"
echo "nonroot:x:65532:" >"$out/etc/group"
chmod 1777 "$out/tmp"
chown -R 65532:65532 "$out/var/lib/rollout-dashboard"
