#!/usr/bin/env bash
# Runs every test of the workspace against real services: installs and starts
# the Kafka-protocol broker and the S3 server (scripts/services.sh), installs
# Debian's Chromium for the browser tests (scripts/browser.sh), runs
# `cargo test`, and stops the services it started.
set -euo pipefail
cd "$(dirname "$0")/.."

# The build goes where `cargo run` puts it (./target, or $CARGO_TARGET_DIR when
# set), so the README's two commands build the dependencies once between them.

started=0
if ! (exec 3<>"/dev/tcp/127.0.0.1/${KAFKA_PORT:-19092}") 2>/dev/null; then started=1; fi
scripts/services.sh start
if [ "$started" = 1 ]; then trap 'scripts/services.sh stop' EXIT; fi
eval "$(scripts/services.sh env)"
# The candle page's tests drive a real headless Chromium (Debian's package).
CHROMIUM="$(scripts/browser.sh)"
export CHROMIUM

# The tools read Kafka client settings from $KAFKA_CONFIG: a developer's own
# must not reach the test's brokers.
unset KAFKA_CONFIG
cargo test --workspace --locked "$@"
