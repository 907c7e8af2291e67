#!/usr/bin/env bash
# The browser the screen tests drive: Debian's chromium package, never Playwright's own
# download (which a city's closed network, and this project's CI, cannot reach).
#
#   scripts/browser.sh install   apt-get install chromium if it is missing (root or sudo)
#   scripts/browser.sh path      print the chromium executable the tests will use
#
# STREETLOOP_CHROMIUM=/path/to/chromium overrides the lookup (e.g. a distribution that
# names it chromium-browser).
set -euo pipefail

note() { echo "browser: $*" >&2; }
die() { echo "browser: error: $*" >&2; exit 1; }

find_chromium() {
    local c
    for c in "${STREETLOOP_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        [[ -n "$c" && -x "$c" ]] && { echo "$c"; return 0; }
    done
    return 1
}

cmd_install() {
    if path=$(find_chromium); then
        note "chromium already installed ($path: $("$path" --version 2>/dev/null || echo '?'))"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "chromium is missing and apt-get is not available; install chromium and set STREETLOOP_CHROMIUM"
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install chromium"
        sudo=(sudo)
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    note "installing chromium (apt-get)"
    "${apt[@]}" update
    "${apt[@]}" install --no-install-recommends chromium fonts-dejavu-core
    path=$(find_chromium) || die "chromium still not found after apt-get install"
    note "chromium installed ($path)"
}

case "${1:-}" in
    install) cmd_install ;;
    path) find_chromium || die "chromium not found; run: scripts/browser.sh install" ;;
    *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
