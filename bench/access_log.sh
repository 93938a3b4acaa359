#!/usr/bin/env bash
# Access-log benchmark, side by side in one run (these machines are noisy):
#  - appends per second with 16 and 64 concurrent writers through `AuditLog::append` (each call
#    returns once its event is committed) while the sequencer integrates, against pgbench
#    inserting comparable single rows into a table of the same shape and indexes with the same
#    number of clients; runs alternate, medians are compared;
#  - the commit-to-position lag of those events (p50, p99, max);
#  - the same append figure on SQLite;
#  - `verify` over RECORDS records (default 1,000,000) in a fresh process: time and peak RSS.
#
#   bench/access_log.sh                 # PostgreSQL at 127.0.0.1:5432 (user postgres)
#   RUNS=5 SECS=20 bench/access_log.sh  # longer, steadier
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG_URL:-postgres://postgres@127.0.0.1:5432}
RUNS=${RUNS:-3}
SECS=${SECS:-10}
RECORDS=${RECORDS:-1000000}
WORK=${BENCH_DIR:-/tmp/steward-audit-bench}
mkdir -p "$WORK"
command -v pgbench >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client; }

cargo build --release --quiet --example audit_bench
BENCH=${CARGO_TARGET_DIR:-target}/release/examples/audit_bench
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

fresh_db() {
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
}

# pgbench's table: the columns and indexes of access_events.
fresh_db steward_bench_pgbench
psql -q "$PG/steward_bench_pgbench" <<'SQL'
CREATE TABLE bench_inserts (
    id BIGSERIAL PRIMARY KEY, at TEXT NOT NULL, actor_kind TEXT NOT NULL, actor_user TEXT,
    actor_org TEXT, action TEXT NOT NULL, target_kind TEXT NOT NULL, target_id TEXT,
    release_id TEXT, history_entry BIGINT, dua_number TEXT, file_id TEXT, outcome TEXT NOT NULL,
    reason TEXT, client_addr TEXT, user_agent TEXT, bytes BIGINT);
CREATE INDEX ON bench_inserts (at);
CREATE INDEX ON bench_inserts (release_id, id);
CREATE INDEX ON bench_inserts (dua_number, id);
CREATE INDEX ON bench_inserts (actor_user, id);
CREATE INDEX ON bench_inserts (actor_org, id);
CREATE INDEX ON bench_inserts (action, id);
CREATE INDEX ON bench_inserts (outcome, id);
CREATE INDEX ON bench_inserts (file_id, id);
SQL
cat > "$WORK/insert.sql" <<'SQL'
INSERT INTO bench_inserts (at, actor_kind, actor_user, action, target_kind, target_id, outcome, reason, client_addr, user_agent) VALUES (clock_timestamp()::text, 'user', md5(random()::text), 'authorization', 'route', '/api/v1/releases/{id}', 'denied', 'no role of the user grants this action', '10.0.0.1', 'bench/1.0');
SQL

fresh_db steward_bench_audit
for CLIENTS in 16 64; do
  : > "$WORK/pgbench.rates"; : > "$WORK/steward.rates"; : > "$WORK/lag.p99"; : > "$WORK/lag.max"
  for RUN in $(seq "$RUNS"); do
    pgbench -n -c "$CLIENTS" -j 2 -T "$SECS" -f "$WORK/insert.sql" "$PG/steward_bench_pgbench" 2>/dev/null \
      | awk '/^tps/ { print int($3) }' >> "$WORK/pgbench.rates"
    read -r RATE P50 P99 MAX N < <("$BENCH" append "$PG/steward_bench_audit" "$CLIENTS" "$SECS")
    echo "$RATE" >> "$WORK/steward.rates"; echo "$P99" >> "$WORK/lag.p99"; echo "$MAX" >> "$WORK/lag.max"
    echo "  $CLIENTS writers, run $RUN: pgbench $(tail -1 "$WORK/pgbench.rates")/s, append $RATE/s, lag p50 $P50 ms p99 $P99 ms max $MAX ms ($N events)"
  done
  PGB=$(median < "$WORK/pgbench.rates"); ST=$(median < "$WORK/steward.rates")
  echo "PostgreSQL, $CLIENTS writers: append $ST/s vs pgbench $PGB/s = $(awk -v a="$ST" -v b="$PGB" 'BEGIN { printf "%.2f", a / b }')x; lag p99 $(median < "$WORK/lag.p99") ms (median of runs), worst max $(sort -n "$WORK/lag.max" | tail -1) ms"
done

rm -f "$WORK/audit.db"*
read -r RATE P50 P99 MAX N < <("$BENCH" append "sqlite://$WORK/audit.db" 16 "$SECS")
echo "SQLite, 16 writers: append $RATE/s, lag p50 $P50 ms p99 $P99 ms"

fresh_db steward_bench_verify
echo "filling the log to $RECORDS records"
"$BENCH" verify "$PG/steward_bench_verify" "$RECORDS" >/dev/null
read -r COUNT VSECS RSS _ < <("$BENCH" verify "$PG/steward_bench_verify" "$RECORDS")
echo "verify: $COUNT records in $VSECS s, peak RSS $RSS KiB"

for DB in steward_bench_pgbench steward_bench_audit steward_bench_verify; do
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB"
done
rm -rf "$WORK"
