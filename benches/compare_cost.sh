#!/usr/bin/env bash
# A full rsync pass that ward compares (fs/compare.rs) against plain
# `rsync -a` and against the same step with `compare: rsync` (rsync's own
# listing plus ward's history dry run), on a tree of 100,000 files of
# 0-12 KiB in FOLDERS folders, copied once; each round then adds 1,000
# files in 50 new folders and times the three, one after the other.
#
#   benches/compare_cost.sh FOLDERS FILES_PER_FOLDER [ROUNDS]
#   (400 250 = shape A, 2000 50 = B, 4 25000 = C; 3 rounds by default)
#
# Needs rsync, python3 and a release ward (./target/release/ward, or
# WARD=path). Prints one line per contender and round: name, round,
# seconds (the whole `ward run`, process start and state included).
set -euo pipefail
folders=$1
per=$2
rounds=${3:-3}
ward=${WARD:-$(pwd)/target/release/ward}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
export WARD_STATE=$dir/state
python3 - "$folders" "$per" <<'PY'
import os, sys
nd, nf = int(sys.argv[1]), int(sys.argv[2])
pat = bytes(range(256)) * 48
i = 0
for d in range(nd):
    p = os.path.join("src", "%03x" % (d // 64), "%03x" % d)
    os.makedirs(p, exist_ok=True)
    for f in range(nf):
        size = (i * 7919) % 12289
        with open(os.path.join(p, "f%05d" % f), "wb") as fh:
            fh.write(pat[i % 256: i % 256 + size] if size <= len(pat) - 256 else pat[:size])
        i += 1
PY
for copy in d1 d2 d3; do rsync -a src/ "$copy/"; done
cat >p.yml <<YML
ward: 1
name: compare-cost
vars: { dest: x, how: ward }
steps:
  - id: copy
    action: rsync
    with: { src: $dir/src, dest: "{{ dest }}", hard_links: false, compare: "{{ how }}" }
YML
timed() {
    sync
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
for ((r = 1; r <= rounds; r++)); do
    for ((k = 0; k < 1000; k++)); do
        d="src/new$r/$(printf %02x $((k % 50)))"
        mkdir -p "$d"
        head -c "$k" /dev/zero >"$d/n$k"
    done
    echo "rsync $r $(timed rsync -a --delete src/ d1/)"
    echo "compared $r $(timed "$ward" run p.yml --var dest="$dir/d2" --var how=ward)"
    echo "compare-rsync $r $(timed "$ward" run p.yml --var dest="$dir/d3" --var how=rsync)"
done
