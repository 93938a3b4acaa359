#!/usr/bin/env bash
# Download benchmark, side by side in one run (these machines are noisy):
#  - one 1 GiB file over TLS 1.3 on loopback with curl (HTTP/1.1 both sides): Steward's
#    authenticated /dl stream against nginx serving the same file with the same certificate;
#    runs alternate, medians are compared;
#  - 200 concurrent downloads of a 64 MiB file: all complete and byte-exact, and the server's
#    peak RSS;
#  - 1,000 slow readers held open while another recipient downloads the same file;
#  - revocation: from the revoke call's answer to the stream's end, TRIALS trials (p50, p99,
#    max) on the serving replica; then, on PostgreSQL, with the stream served by a second
#    `steward serve` replica and the revocation made at the first.
#
#   bench/download.sh                  # SQLite under $BENCH_DIR, then PostgreSQL for replicas
#   RUNS=5 TRIALS=50 bench/download.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
TRIALS=${TRIALS:-50}
WORK=${BENCH_DIR:-/tmp/steward-download-bench}
rm -rf "$WORK"; mkdir -p "$WORK"
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
ulimit -n 65536 2>/dev/null || true

cargo build --release --quiet --example download_bench
BENCH=${CARGO_TARGET_DIR:-target}/release/examples/download_bench
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Steward, with a release of twenty recipients and its large objects in place.
"$BENCH" serve "$WORK" > "$WORK/facts.json" 2> "$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; true' EXIT
for _ in $(seq 600); do
  [ -s "$WORK/facts.json" ] && break
  kill -0 "$SERVER" 2>/dev/null || break
  sleep 0.5
done
[ -s "$WORK/facts.json" ] || { cat "$WORK/serve.log"; exit 1; }
fact() { python3 -c "import json,sys; d=json.load(open('$WORK/facts.json')); print(eval(sys.argv[1]))" "$1"; }
URL=$(fact 'd["url"]'); CA=$(fact 'd["ca"]'); TLS=$(fact 'd["tls_dir"]')
BIG_ID=$(fact 'd["big"]["id"]'); BIG_PATH=$(fact 'd["big"]["path"]'); BIG_SHA=$(fact 'd["big"]["sha256"]')
TOKEN=$(fact 'd["tokens"][0]')
rss() { awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$SERVER/status"; }
echo "server up at $URL; peak RSS after setup $(rss) MiB"

# nginx: the same file, the same certificate, TLS 1.3 only.
NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/nginx.conf" <<CONF
user root;
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $TLS/server.pem;
        ssl_certificate_key $TLS/server-key.pem;
        ssl_protocols TLSv1.3;
        location = /big { alias $BIG_PATH; default_type application/octet-stream; }
    }
}
CONF
nginx -c "$WORK/nginx.conf"
sleep 0.5

curl_speed() { curl -s --http1.1 --tlsv1.3 --cacert "$CA" -o /dev/null -w '%{speed_download} %{size_download}\n' "$@"; }
link() {
  curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{}' "$URL/api/v1/files/$BIG_ID/links" | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])'
}
: > "$WORK/steward.speed"; : > "$WORK/nginx.speed"
for RUN in $(seq "$RUNS"); do
  read -r NGINX_BPS NGINX_SIZE < <(curl_speed "https://localhost:$NGINX_PORT/big")
  LINK=$(link)
  read -r STEWARD_BPS STEWARD_SIZE < <(curl_speed -H "Authorization: Bearer $TOKEN" "$URL$LINK")
  [ "$STEWARD_SIZE" = "$NGINX_SIZE" ] || { echo "sizes differ: $STEWARD_SIZE vs $NGINX_SIZE"; exit 1; }
  echo "$((NGINX_BPS / 1048576))" >> "$WORK/nginx.speed"
  echo "$((STEWARD_BPS / 1048576))" >> "$WORK/steward.speed"
  echo "  run $RUN: nginx $((NGINX_BPS / 1048576)) MiB/s, steward $((STEWARD_BPS / 1048576)) MiB/s"
done
# Byte-exact through Steward too.
LINK=$(link)
GOT=$(curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$URL$LINK" | sha256sum | cut -d' ' -f1)
[ "$GOT" = "$BIG_SHA" ] || { echo "the 1 GiB download differs"; exit 1; }
N=$(median < "$WORK/nginx.speed"); S=$(median < "$WORK/steward.speed")
echo "1 GiB over TLS 1.3, median of $RUNS: steward $S MiB/s, nginx $N MiB/s ($(python3 -c "print(f'{$S/$N:.2f}')")x)"

read -r OK SECS RATE < <("$BENCH" concurrent "$WORK/facts.json" 200)
echo "200 concurrent downloads of 64 MiB: $OK of 200 complete and byte-exact in $SECS s ($RATE MiB/s); server peak RSS $(rss) MiB"

read -r CONNECTED NORMAL < <("$BENCH" slow "$WORK/facts.json" 1000 30)
echo "1000 slow readers: $CONNECTED connected while another download of 64 MiB took $NORMAL s; server peak RSS $(rss) MiB"

read -r P50 P99 MAX < <("$BENCH" revoke "$WORK/facts.json" "$TRIALS")
echo "revocation to stream end, $TRIALS trials, same replica: p50 $P50 ms, p99 $P99 ms, max $MAX ms"
echo "server peak RSS over the whole run: $(rss) MiB"
kill $SERVER; wait $SERVER 2>/dev/null || true
kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true

# Two replicas on one PostgreSQL sharing keys: the stream at B, the revocation at A.
PG=${PG_URL:-postgres://postgres@127.0.0.1:5432}
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS steward_bench_dl" -c "CREATE DATABASE steward_bench_dl"
cargo build --release --quiet --bin steward
STEWARD=${CARGO_TARGET_DIR:-target}/release/steward
"$STEWARD" keys init --dir "$WORK/keys" > /dev/null
export STEWARD_KEYS__MASTER_IDENTITY_FILE="$WORK/keys/master.age" STEWARD_KEYS__SIGNING_KEY_FILE="$WORK/keys/signing.key" \
  STEWARD_KEYS__JWT_KEYS_DIR="$WORK/keys/jwt" STEWARD_POLICY__LINKAGE_SECRET_FILE="$WORK/keys/linkage.secret" \
  STEWARD_POLICY__OPTOUT_SECRET_FILE="$WORK/keys/optout.secret"
rm -f "$WORK/facts.json"
"$BENCH" serve "$WORK/a" "$PG/steward_bench_dl" > "$WORK/facts.json" 2> "$WORK/serve-a.log" &
SERVER=$!
for _ in $(seq 600); do
  [ -s "$WORK/facts.json" ] && break
  kill -0 "$SERVER" 2>/dev/null || break
  sleep 0.5
done
[ -s "$WORK/facts.json" ] || { cat "$WORK/serve-a.log"; exit 1; }
STEWARD_DATA_DIR="$WORK/b" STEWARD_SERVER__LISTEN=127.0.0.1:0 STEWARD_DATABASE__URL="$PG/steward_bench_dl" \
  STEWARD_STORAGE__FS__ROOT="$WORK/a/data/objects" STEWARD_LOG__FILTER=warn STEWARD_JOBS__RUN_IN_SERVE=false \
  "$STEWARD" serve > "$WORK/b.out" 2> "$WORK/b.log" &
REPLICA=$!
trap 'kill $SERVER $REPLICA 2>/dev/null; true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$WORK/b.out" 2>/dev/null && break; sleep 0.2; done
B_URL=$(sed -n 's/.*listening on //p' "$WORK/b.out" | head -1)
read -r P50 P99 MAX < <("$BENCH" revoke "$WORK/facts.json" "$TRIALS" "$B_URL" "$WORK/b/tls/ca.pem")
echo "revocation to stream end, $TRIALS trials, stream at replica B, revocation at A: p50 $P50 ms, p99 $P99 ms, max $MAX ms"
kill $SERVER $REPLICA 2>/dev/null || true
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS steward_bench_dl WITH (FORCE)"
rm -rf "$WORK"
