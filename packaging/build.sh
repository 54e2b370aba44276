#!/usr/bin/env bash
# Build the one-folder desktop app into dist/dermdesk/ and smoke-test it.
#   packaging/build.sh            (needs: pip install -e ".[dev]", which brings PyInstaller)
set -euo pipefail
cd "$(dirname "$0")/.."
python -m PyInstaller packaging/dermdesk.spec --noconfirm --distpath dist \
    --workpath build/pyinstaller
app=dist/dermdesk/dermdesk
"$app" --version
lib=$(mktemp -d)
trap 'rm -rf "$lib"' EXIT
printf 'built %s (%s)\n' "$app" "$(du -sh dist/dermdesk | cut -f1)"
QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen} DERMDESK_QUIT_AFTER_MS=500 \
    DERMDESK_HOME="$lib" "$app" && echo "GUI starts and quits: ok"
