#!/usr/bin/env bash
# Headless Chromium for the browser test (tests/test_browser.py).
#
#   eval "$(bash tests/services/chromium.sh)"    # install it if missing; sets TRIALS_CHROMIUM
#
# Installs Debian's `chromium` with apt-get when /usr/bin/chromium is missing (`apt-get update`
# only if the install fails, as on a machine whose package lists are stale or absent), checks that
# the binary runs, and prints one `export TRIALS_CHROMIUM=/usr/bin/chromium` line on stdout;
# everything else goes to stderr. Running it again only checks and prints the line again.
# The test drives this browser through Playwright's bundled driver: no browser is downloaded.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
log() { echo "chromium.sh: $*" >&2; }

exec 9>/tmp/trials-chromium.lock
flock 9  # two runs at once must not both run apt-get

if [ ! -x "$CHROMIUM" ]; then
    [ "$(id -u)" = 0 ] || { log "$CHROMIUM is missing; run as root to install Debian's chromium"; exit 1; }
    log "installing Debian's chromium with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q chromium >&2; then
        apt-get update -q >&2
        apt-get install -y -q chromium >&2
    fi
    [ -x "$CHROMIUM" ] || { log "apt-get installed no $CHROMIUM"; exit 1; }
fi

version="$("$CHROMIUM" --version 2>/dev/null)" || { log "$CHROMIUM --version failed"; exit 1; }
log "$version"
echo "export TRIALS_CHROMIUM=$CHROMIUM"
