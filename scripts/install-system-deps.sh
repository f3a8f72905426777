#!/usr/bin/env bash
# The system (Debian) packages the test suite needs beyond Python, installed by `make test`:
#   postgresql   a throwaway server for the distributed-tuning test (tests/test_tune_postgres.py)
#   chromium     the browser tests of `cifarlab serve` and `cifarlab report` (Playwright drives it)
#   imagemagick  the library Wand loads: CIFAR-10-C's motion blur and snow checked against ImageMagick
#                (tests/test_corruptions.py), as the reference generator made them
# Idempotent: installs only the missing ones, and only as root or with passwordless sudo. Otherwise it
# prints one line and carries on; the tests that need a missing package then skip and say why.
set -uo pipefail
PACKAGES=(postgresql chromium imagemagick)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

note() { echo "install-system-deps: $* (tests that need ${missing[*]} will skip)"; exit 0; }
command -v apt-get >/dev/null || note "no apt-get on this system; install ${missing[*]} with its package manager"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  note "not root and no passwordless sudo; to install: sudo apt-get install -y ${missing[*]}"
fi
echo "install-system-deps: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
  && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
  || note "apt-get could not install ${missing[*]}"
