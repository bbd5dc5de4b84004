#!/usr/bin/env bash
# Fetch Apache ECharts' minified bundle from the npm registry into parcours/report/assets/,
# with its LICENSE and NOTICE, and check its sha256. The report inlines this file, so it works
# offline; run this only to re-vendor (the file is committed). Needs npm.
set -euo pipefail
VERSION="6.1.0"
SHA256="b66b25aeb4df84e33199dc21694014d336d222cbd9deb0e5a7c14bd6aa0d0fd0"  # dist/echarts.min.js
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/parcours/report/assets"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "echarts@$VERSION" >/dev/null)
tar -xzf "$WORK/echarts-$VERSION.tgz" -C "$WORK" package/dist/echarts.min.js package/LICENSE package/NOTICE
echo "$SHA256  $WORK/package/dist/echarts.min.js" | sha256sum --check --quiet
mkdir -p "$DEST"
cp "$WORK/package/dist/echarts.min.js" "$DEST/echarts.min.js"
cp "$WORK/package/LICENSE" "$DEST/ECHARTS-LICENSE"
cp "$WORK/package/NOTICE" "$DEST/ECHARTS-NOTICE"
echo "echarts $VERSION vendored into $DEST (sha256 $SHA256)"
