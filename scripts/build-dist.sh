#!/usr/bin/env bash
# build-dist.sh [--out DIR] [--no-tarball]: a self-contained Shuttle for one Linux machine type.
#
# Makes DIR/shuttle-VERSION-linux-ARCH/ and DIR/shuttle-VERSION-linux-ARCH.tar.gz (default DIR: .tmp/dist)
# holding the compiled program (dist/), its production dependencies with the Node runtime they include
# (the `node` package: node_modules/node/bin/node), the `shuttle` launcher, the systemd units, the udev
# rules, the example config and the installer. The target machine needs neither npm nor a compiler:
#
#   tar xzf shuttle-*.tar.gz && sudo ./shuttle-*/scripts/install.sh
#
# Production dependencies come from `npm ci --omit=dev` in a staging folder (this machine's npm, the
# lockfile's exact versions), cached in .tmp/dist-cache per lockfile and machine type. Native modules
# (usb, node-hid, sharp) are prebuilt for the machine the build runs on: build on the same type of
# machine (x64 or arm64) as the target.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/.tmp/dist
tarball=yes
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --no-tarball) tarball=no; shift ;;
    -h | --help) sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "build-dist.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

case $(uname -m) in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
version=$(sed -n 's/^  "version": "\([^"]*\)",$/\1/p' "$root/package.json")
[ -n "$version" ] || { echo "build-dist.sh: no version in package.json" >&2; exit 1; }
name=shuttle-$version-linux-$arch
stage=$out/$name
say() { printf 'build-dist: %s\n' "$*" >&2; }

rm -rf "$stage" "$out/$name.tar.gz"
mkdir -p "$stage"

say "type checking and bundling"
if ! "$root/node_modules/.bin/tsc" -p "$root/tsconfig.json" --noEmit >"$out/tsc.log" 2>&1; then
  cat "$out/tsc.log" >&2
  say "the TypeScript sources do not type-check; no artifact"
  exit 1
fi
"$root/node_modules/node/bin/node" "$root/scripts/build.mjs" --outdir "$stage/dist" --no-sourcemap --release

# Production dependencies, once per lockfile and machine type.
lock_hash=$(sha256sum "$root/package-lock.json" | cut -c1-16)
cache=$root/.tmp/dist-cache/modules-$lock_hash-linux-$arch
if [ ! -d "$cache/node_modules/node/bin" ]; then
  say "installing production dependencies (npm ci --omit=dev)"
  mkdir -p "$root/.tmp"
  tmp=$(mktemp -d "$root/.tmp/dist-cache.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  cp "$root/package-lock.json" "$tmp/"
  # The project's own lifecycle scripts (prepare: tsc) need dev tools; dependencies' scripts still run
  # (the `node` package fetches its runtime in one).
  "$root/node_modules/node/bin/node" -e '
    const fs = require("node:fs");
    const p = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    delete p.scripts;
    fs.writeFileSync(process.argv[2], JSON.stringify(p, null, 2) + "\n");
  ' "$root/package.json" "$tmp/package.json"
  (cd "$tmp" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) >&2
  [ -x "$tmp/node_modules/node/bin/node" ] || { say "npm ci left no node runtime in node_modules/node/bin"; exit 1; }
  # Node's C headers (two thirds of the runtime package) serve only to compile addons: not on the box.
  rm -rf "$tmp"/node_modules/node/node_modules/node-linux-*/include
  mkdir -p "$(dirname "$cache")"
  rm -rf "$cache"
  mv "$tmp" "$cache"
  trap - EXIT
fi
# Hard links when the cache is on the same filesystem: nothing in the artifact is modified afterwards.
cp -al "$cache/node_modules" "$stage/node_modules" 2>/dev/null || { rm -rf "$stage/node_modules" && cp -a "$cache/node_modules" "$stage/node_modules"; }

say "assembling $name"
# package.json: ESM ("type": "module") and the version; nothing for npm to run.
"$root/node_modules/node/bin/node" -e '
  const fs = require("node:fs");
  const p = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  const keep = { name: p.name, version: p.version, description: p.description, license: p.license, private: true, type: p.type, engines: p.engines, dependencies: p.dependencies };
  fs.writeFileSync(process.argv[2], JSON.stringify(keep, null, 2) + "\n");
' "$root/package.json" "$stage/package.json"
install -d "$stage/bin" "$stage/lib" "$stage/systemd" "$stage/udev" "$stage/polkit" "$stage/config" "$stage/scripts"
install -m 0755 "$root/bin/shuttle.js" "$stage/bin/shuttle.js"
install -m 0755 "$root/scripts/shuttle.sh" "$stage/bin/shuttle"
install -m 0755 "$root/systemd/shuttle-card" "$stage/lib/shuttle-card"
install -m 0644 "$root"/systemd/*.service "$stage/systemd/"
install -m 0644 "$root"/udev/*.rules "$stage/udev/"
install -m 0644 "$root"/polkit/*.rules "$stage/polkit/"
install -m 0644 "$root/config/shuttle.example.toml" "$stage/config/"
install -m 0755 "$root/scripts/install.sh" "$root/scripts/uninstall.sh" "$stage/scripts/"
install -m 0644 "$root/README.md" "$stage/"
# The sd_notify addon (binding.gyp), built by npm ci in this checkout: the unit's NotifyAccess=main needs it.
addon=build/Release/sd_notify.node
[ -f "$root/$addon" ] || { say "$addon is missing: run npm ci (or npx node-gyp rebuild) first"; exit 1; }
install -D -m 0755 "$root/$addon" "$stage/$addon"
# The dashboard's static files (the daemon serves them at /; Preact and htm come from node_modules).
cp -a "$root/web" "$stage/web"
node_version=$("$stage/node_modules/node/bin/node" --version)
printf 'name=%s\nversion=%s\narch=linux-%s\nnode=%s\n' "$name" "$version" "$arch" "$node_version" > "$stage/.shuttle-artifact"

# The artifact must run on its own runtime before it is shipped.
got=$("$stage/bin/shuttle" --version)
[ "$got" = "$version" ] || { say "the assembled tree does not run: 'shuttle --version' printed '$got'"; exit 1; }
"$stage/node_modules/node/bin/node" -e 'process.dlopen({ exports: {} }, process.argv[1])' "$stage/$addon" || { say "$addon does not load in the bundled runtime"; exit 1; }

if [ "$tarball" = yes ]; then
  say "packing $name.tar.gz"
  tar -C "$out" --owner=0 --group=0 --numeric-owner -cf - "$name" | gzip -1 > "$out/$name.tar.gz.part"
  mv "$out/$name.tar.gz.part" "$out/$name.tar.gz"
  echo "$out/$name.tar.gz"
else
  echo "$stage"
fi
