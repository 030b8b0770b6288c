#!/usr/bin/env bash
# Fan-out on SQLite (issue 17): 10,000 trivial items (`cmd: [true]`), each
# item's start and end durable in the state database, against a bash loop
# that starts the same 10,000 processes; then a run killed (SIGKILL) after
# about a quarter of its items, and its resume: how long until the first
# item the resume starts, and how many items ran twice (must be the ones
# that were running when it was killed, no more).
#
#   benches/fanout_cost.sh [ITEMS] [ROUNDS] [MAX_PARALLEL]
#   (10000 items, 3 rounds, 8 at once by default)
#
# Needs a release ward (./target/release/ward, or WARD=path), python3.
# With WARD_PG=postgres://... the runs are recorded in that PostgreSQL
# database instead (password from PGPASSWORD or a passfile; every round's
# runs stay there), each with its own local folder.
# Prints per round: seconds and items/s of the loop and of ward (the whole
# `ward run`: process start, validation, state), then the resume figures.
set -euo pipefail
items=${1:-10000}
rounds=${2:-3}
parallel=${3:-8}
ward=${WARD:-$(pwd)/target/release/ward}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
seq 1 "$items" >items.txt
cat >p.yml <<YML
ward: 1
name: fanout-cost
steps:
  - id: each
    for_each: { lines: $dir/items.txt }
    max_parallel: $parallel
    cmd: [true]
YML
# The resume's shape: each item leaves a line with its key and the time
# it started, so the first item of the resume and the doubles can be told.
cat >k.yml <<YML
ward: 1
name: fanout-kill
steps:
  - id: each
    for_each: { lines: $dir/items.txt }
    max_parallel: $parallel
    run: echo "{{ item }} \$(date +%s.%N)" >> $dir/journal
YML
now() { date +%s.%N; }
for ((r = 1; r <= rounds; r++)); do
    export WARD_STATE=${WARD_PG:-$dir/state-$r/ward.db} WARD_STATE_FOLDER=$dir/local-$r
    start=$(now)
    for ((i = 0; i < items; i++)); do /bin/true; done
    loop=$(echo "$(now) - $start" | bc)
    start=$(now)
    "$ward" run p.yml >/dev/null 2>&1
    run=$(echo "$(now) - $start" | bc)
    echo "round $r: loop ${loop}s ($(echo "$items / $loop" | bc)/s), ward ${run}s ($(echo "$items / $run" | bc)/s), ward/loop $(echo "scale=2; $run / $loop" | bc)x"
    # Killed after about a quarter of the items, then resumed.
    export WARD_STATE=${WARD_PG:-$dir/kill-$r/ward.db} WARD_STATE_FOLDER=$dir/klocal-$r
    : >journal
    "$ward" run k.yml >/dev/null 2>&1 &
    pid=$!
    while [ "$(wc -l <journal)" -lt $((items / 4)) ]; do sleep 0.01; done
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    # Items that were running go on without ward (their own process
    # groups): let them end before counting.
    sleep 0.5
    before=$(wc -l <journal)
    start=$(now)
    "$ward" resume last >/dev/null 2>&1
    python3 - "$before" "$start" journal <<'PY'
import sys, collections
before, start = int(sys.argv[1]), float(sys.argv[2])
lines = [l.split() for l in open(sys.argv[3])]
after = lines[before:]
first = min(float(t) for _, t in after) - start if after else float("nan")
runs = collections.Counter(k for k, _ in lines)
twice = sum(1 for n in runs.values() if n > 1)
print(f"  resume: {len(lines) - before} items, first new item {first * 1000:.0f} ms after "
      f"`ward resume` started; {twice} items ran twice; {len(runs)} distinct items")
PY
done
