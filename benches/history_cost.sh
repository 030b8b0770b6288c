#!/usr/bin/env bash
# The cost of keeping older snapshots unchanged (issue 16): rsync's dry run
# that ward runs before each local copy, against the copy itself, on an
# unchanged tree whose `current` is hard-linked into a snapshot.
#
#   benches/history_cost.sh [FILES] [ROUNDS]   (default 100000 files, 3 rounds)
#
# Needs rsync and a built ./target/debug/ward (or WARD=path). Prints, per
# round, seconds of: the plain pass, the dry run alone (same argv plus
# ward's dry-run flags), and ward's whole step (dry run + copy), then the
# dry run over a list of 100 changed paths (the `changed_since` shape).
# Rounds alternate, so a load that comes and goes hits both.
set -euo pipefail
files=${1:-100000}
rounds=${2:-3}
ward=${WARD:-$(pwd)/target/debug/ward}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
per=100
for ((d = 0; d < files / per; d++)); do
    mkdir -p "src/$((d / 100))/$d"
    for ((f = 0; f < per; f++)); do printf '%s' "$d.$f" >"src/$((d / 100))/$d/$f"; done
done
rsync -aH --numeric-ids --delete -- src/ current
cp -al current snap
cat >p.yml <<YML
ward: 1
name: cost
steps:
  - id: copy
    action: rsync
    with: { src: src, dest: current }
YML
plain=(rsync -aH --numeric-ids --delete --stats -- src/ current)
dry=(rsync -aH --numeric-ids --delete --stats --dry-run --no-human-readable
    "--out-format=ward-item %i %l %n" -- src/ current)
TIMEFORMAT=%R
echo "files=$files rounds=$rounds load: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= rounds; r++)); do
    p=$({ time "${plain[@]}" >/dev/null; } 2>&1)
    d=$({ time "${dry[@]}" >/dev/null; } 2>&1)
    w=$({ time WARD_STATE="$dir/state/ward.db" "$ward" run p.yml >/dev/null 2>&1; } 2>&1)
    k=$(WARD_STATE="$dir/state/ward.db" "$ward" status --json | grep -o '"history_secs": *[0-9.e-]*' | head -1 || true)
    echo "round $r: plain pass ${p}s, dry run ${d}s, ward run (dry run + copy) ${w}s, of which the step's dry run and unsharing ${k:-?}"
done
# A changed_since pass: the dry run over the list rsync is handed (one
# file in each of 100 folders).
for ((d = 0; d < 100 && d < files / per; d++)); do printf '%s\0' "$((d / 100))/$d/0"; done >list
for ((r = 1; r <= rounds; r++)); do
    l=$({ time rsync -aH --numeric-ids --delete --stats -r --from0 --files-from=list \
        --dry-run --no-human-readable "--out-format=ward-item %i %l %n" -- src/ current \
        >/dev/null; } 2>&1)
    echo "round $r: dry run over 100 listed paths ${l}s"
done
# 1% of the files chmodded (another 1% each round, all shared with the
# snapshot): ward's step copies each to an inode of its own first.
for ((r = 1; r <= rounds; r++)); do
    n=0
    for ((d = 0; d < files / per && n < files / 100; d++)); do
        chmod 600 "src/$((d / 100))/$d/$r"
        n=$((n + 1))
    done
    w=$({ time WARD_STATE="$dir/state/ward.db" "$ward" run p.yml >/dev/null 2>&1; } 2>&1)
    k=$(WARD_STATE="$dir/state/ward.db" "$ward" status --json | grep -o '"history_secs": *[0-9.e-]*' | head -1 || true)
    u=$(WARD_STATE="$dir/state/ward.db" "$ward" status --json | grep -o '"unshared": *[0-9]*' | head -1 || true)
    echo "round $r: $n files chmodded, ward run (dry run + new inodes + copy) ${w}s, of which the dry run and unsharing ${k:-?} ($u)"
done
