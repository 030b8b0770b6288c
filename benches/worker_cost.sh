#!/usr/bin/env bash
# Workers on one PostgreSQL (issue 17): ITEMS trivial items (`cmd: [true]`)
# of one `workers: true` step, run by 1, 2 and 4 `ward worker` processes on
# this host (each up to MAX_PARALLEL at once), in interleaved rounds.
#
#   WARD_PG=postgres://USER@HOST:PORT/DB benches/worker_cost.sh [ITEMS] [ROUNDS] [MAX_PARALLEL] [WORKERS...]
#   (10000 items, 3 rounds, 8 at once, workers 1 2 4 by default)
#
# Needs a release ward (./target/release/ward, or WARD=path), psql, and a
# PostgreSQL database ward may use (password from PGPASSWORD or a passfile;
# the runs stay there). Prints per round and worker count: items/s from
# the first claim to the last release (ward.claims, the workers' clocks),
# the whole run's wall time, and each worker's claim latency p50/p99 (the
# claim statement's round trip, from its summary line).
set -euo pipefail
: "${WARD_PG:?set WARD_PG=postgres://...}"
items=${1:-10000}
rounds=${2:-3}
parallel=${3:-8}
shift $(( $# > 3 ? 3 : $# ))
counts=("${@:-1 2 4}")
# shellcheck disable=SC2206
counts=(${counts[*]})
ward=${WARD:-$(pwd)/target/release/ward}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
seq 1 "$items" >items.txt
cat >p.yml <<YML
ward: 1
name: worker-cost
steps:
  - id: each
    for_each: { lines: $dir/items.txt }
    max_parallel: $parallel
    workers: true
    cmd: [true]
YML
export WARD_STATE=$WARD_PG WARD_STATE_FOLDER=$dir/local
q() { psql "$WARD_PG" -AtXq -c "$1"; }
now() { date +%s.%N; }
for ((r = 1; r <= rounds; r++)); do
    for w in "${counts[@]}"; do
        start=$(now)
        "$ward" run p.yml >run.out 2>&1 &
        runner=$!
        id=""
        until [ -n "$id" ]; do
            sleep 0.05
            id=$(q "SELECT run_id FROM ward.offers o JOIN ward.runs r ON r.id = o.run_id \
                    WHERE r.state = 'running' AND r.playbook_name = 'worker-cost' LIMIT 1" 2>/dev/null || true)
        done
        rm -f w*.err
        pids=()
        for ((k = 1; k <= w; k++)); do
            "$ward" worker --run "$id" 2>"w$k.err" &
            pids+=($!)
        done
        wait "$runner"
        for p in "${pids[@]}"; do wait "$p"; done
        wall=$(echo "$(now) - $start" | bc)
        span=$(q "SELECT (max(at) FILTER (WHERE kind = 'released') - min(at) FILTER (WHERE kind = 'claimed'))::float / 1000 FROM ward.claims WHERE run_id = '$id'")
        ok=$(q "SELECT count(*) FROM ward.items WHERE run_id = '$id' AND state = 'succeeded'")
        lat=$(sed -n 's/.*claims, p50 \([0-9.]*\) ms, p99 \([0-9.]*\) ms.*/\1\/\2/p' w*.err | paste -sd' ')
        echo "round $r, $w workers: $ok/$items succeeded, $(echo "$items / $span" | bc)/s over ${span}s (wall ${wall}s); claim p50/p99 ms per worker: $lat"
    done
done
