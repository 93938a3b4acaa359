#!/usr/bin/env bash
# Extract benchmark: a synthetic medical-claims source of about SIZE_GB (default 1), extracted at
# Level I and Level III with the filesystem store, beside the reference pipeline
# `xsv select <the same columns> | zstd -3 | age -r <key>` on the same file.
# Each is run RUNS times (default 3), alternating, and the medians are compared: a shared
# machine's noise moves single runs by a fifth. Prints source MB/s, peak RSS, the wall-time
# ratio Steward / reference (of the medians, and the median of each pair's own ratio), and the
# CPU seconds each side spends.
#
#   bench/extract.sh            # 1 GB
#   SIZE_GB=5 bench/extract.sh  # 5 GB (needs about 12 GB free under BENCH_DIR, /tmp by default)
#   RUNS=5 bench/extract.sh     # more runs, steadier medians
#   LEVELS="I II III" bench/extract.sh   # the levels to measure (default I and III)
# Level III includes the protected-member pass that a Level III extract job runs first.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_GB=${SIZE_GB:-1}
RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-/tmp/steward-bench}
mkdir -p "$WORK"

command -v age >/dev/null || { apt-get update -qq && apt-get install -y -qq age; }
command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd; }
command -v xsv >/dev/null || cargo install --locked xsv
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }

cargo build --release --quiet --bin steward --example extract_bench
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/steward
BENCH=$TARGET/release/examples/extract_bench

# About 490 bytes per medical-claims row.
ROWS=$(( SIZE_GB * 2050000 ))
SOURCE="$WORK/synth-$SIZE_GB/med_claim.csv"
if [ ! -f "$SOURCE" ]; then
  echo "generating $ROWS medical-claims rows with steward synth"
  /usr/bin/time -f "synth: %e s, peak RSS %M KiB" "$BIN" synth --out "$WORK/synth-$SIZE_GB" --rows "$ROWS" --seed 1
fi
SIZE_MB=$(( $(stat -c %s "$SOURCE") / 1000000 ))
echo "source: $SOURCE ($SIZE_MB MB)"

KEY=$(age-keygen 2>/dev/null | grep -o 'age1[0-9a-z]*')
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for LEVEL in ${LEVELS:-I III}; do
  : > "$WORK/steward.times"; : > "$WORK/reference.times"; : > "$WORK/ratios"; : > "$WORK/cpu"; PEAK=0
  # Runs alternate between Steward and the reference so that both see the same machine; each
  # pair's own ratio is kept too, since a shared machine's speed drifts between pairs.
  for RUN in $(seq "$RUNS"); do
    rm -rf "$WORK/store-$LEVEL"
    /usr/bin/time -o "$WORK/steward.cpu" -f '%U %S' "$BENCH" "$SOURCE" "$LEVEL" "$WORK/store-$LEVEL" > "$WORK/steward.out"
    read -r _ ROWS_OUT _ SECS _ RSS < "$WORK/steward.out"
    echo "$SECS" >> "$WORK/steward.times"
    [ "$RSS" -gt "$PEAK" ] && PEAK=$RSS
    COLS=$(cat "$WORK/store-$LEVEL/columns.txt")
    START=$(date +%s.%N)
    /usr/bin/time -o "$WORK/reference.cpu" -f '%U %S' bash -c \
      'xsv select "$1" "$2" | zstd -3 -q -c | age -r "$3" > "$4"' _ \
      "$COLS" "$SOURCE" "$KEY" "$WORK/reference-$LEVEL.age"
    END=$(date +%s.%N)
    REF_SECS=$(echo "$END - $START" | bc -l)
    echo "$REF_SECS" >> "$WORK/reference.times"
    echo "$SECS / $REF_SECS" | bc -l >> "$WORK/ratios"
    # CPU seconds (user + system) of each side, all of its threads and processes.
    echo "$(awk '{ print $1 + $2 }' "$WORK/steward.cpu") $(awk '{ print $1 + $2 }' "$WORK/reference.cpu")" >> "$WORK/cpu"
    # The outputs are as large as the source; keep only the source, for the next run.
    rm -rf "$WORK/store-$LEVEL" "$WORK/reference-$LEVEL.age"
  done
  SECS=$(median < "$WORK/steward.times")
  REF=$(median < "$WORK/reference.times")
  printf 'Level %-3s steward %6.2f s (%6.1f MB/s, %s rows, peak RSS %d MiB) | reference %6.2f s | ratio %.2fx (medians of %d runs; steward: %s; reference: %s)\n' \
    "$LEVEL" "$SECS" "$(echo "$SIZE_MB / $SECS" | bc -l)" "$ROWS_OUT" $(( PEAK / 1024 )) "$REF" \
    "$(echo "$SECS / $REF" | bc -l)" "$RUNS" \
    "$(xargs printf '%.2f ' < "$WORK/steward.times")" "$(xargs printf '%.2f ' < "$WORK/reference.times")"
  printf '          median of the runs'"'"' own ratios %.2fx (%s); CPU seconds, median: steward %.1f, reference %.1f\n' \
    "$(median < "$WORK/ratios")" "$(xargs printf '%.2f ' < "$WORK/ratios")" \
    "$(awk '{ print $1 }' "$WORK/cpu" | median)" "$(awk '{ print $2 }' "$WORK/cpu" | median)"
done
rm -f "$WORK"/steward.* "$WORK"/reference.* "$WORK/ratios" "$WORK/cpu"
echo "source kept in $WORK/synth-$SIZE_GB (about $(( SIZE_GB * 2 )) GB of CSV); delete it when done"
