#!/bin/sh
# System packages the test suite uses, installed with apt-get when they are missing (Debian/Ubuntu).
# Idempotent: installs only what is missing, and only as root or with passwordless sudo; otherwise it
# prints one line and the tests that need a package skip, saying why.
#   chromium: the browser tests of `cifarlab serve` and `cifarlab report` (Playwright drives it)
set -u
PACKAGES="chromium"

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: no apt-get here; install$missing yourself (the tests that need it skip)"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    echo "install-system-deps: not root and no passwordless sudo; run 'sudo apt-get install -y$missing' (the tests that need it skip)"
    exit 0
fi
echo "install-system-deps: installing$missing"
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing; }; then
    echo "install-system-deps: apt-get could not install$missing (the tests that need it skip)"
fi
exit 0
