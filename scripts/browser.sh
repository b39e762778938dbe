#!/usr/bin/env bash
# Prints the path of the Chromium the browser tests drive: $CHROMIUM if it
# names a program, else Debian's, installed if missing (from Debian's package
# registry, nothing else).
set -euo pipefail
if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then
  echo "$CHROMIUM"
  exit 0
fi
if ! command -v chromium >/dev/null 2>&1; then
  # `sudo VAR=value cmd` passes the variable through sudo's environment reset.
  as_root=()
  if [ "$(id -u)" != 0 ]; then as_root=(sudo); fi
  echo "installing Debian's chromium for the browser tests" >&2
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
fi
command -v chromium
