#!/usr/bin/env bash
# Issue 16's speed targets against the two-core floor they assume.
#
# The targets say a snapshot may take at most 0.55x of `cp -al` and a
# deletion at most 0.4x of `rm -rf`, because "two cores link in parallel".
# This measures how far two processes really get on this machine: `cp -al`
# of the tree next to two `cp -al` at once, each on every other folder
# (the floor two threads can reach with cp's own two calls per file, and
# nothing of ward's: no manifest, no fsync); then `rm -rf` next to two
# `rm -rf` at once on the halves. ward runs beside them: a nightly
# `snapshot.hardlink` (`hash: all`, every hash carried) and a `rotate`
# deleting one snapshot (the default `count_freed: true`).
#
#   benches/link_floor.sh FOLDERS FILES_PER_FOLDER [ROUNDS]
#   (400 250 = shape A, 2000 50 = B, 4 25000 = C; 5 rounds by default)
#
# 100,000 files of 0-12 KiB. Each contender links its own copy of the
# tree: every link moves a file's ctime, and a `cp -al` of ward's copy
# would make ward's next snapshot read every file again. Interleaved
# rounds, `sync` before each timing. Needs python3 and a release ward
# (./target/release/ward, or WARD=path). Prints `name round seconds`
# lines (ward's: the whole `ward run`, process start and state included),
# a `linked N entries in Ts` line per ward snapshot (its linking alone),
# then medians and ratios.
set -euo pipefail
folders=$1
per=$2
rounds=${3:-5}
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
    p = os.path.join("current", "%03x" % (d // 64), "%03x" % d) if nd > 64 else os.path.join("current", "d%02d" % d)
    os.makedirs(p, exist_ok=True)
    for f in range(nf):
        sz = (i * 7919) % 12289
        with open(os.path.join(p, "f%05d" % f), "wb") as fh:
            fh.write(pat[i % 256: i % 256 + sz] if sz <= len(pat) - 256 else pat[:sz])
        i += 1
PY
cp -a current other
# The folders the two halves split: the leaves (two levels down when the
# generator nests them, one level for a few big folders).
leaves() { if [ "$folders" -gt 64 ]; then ls -d other/*/*; else ls -d other/*; fi; }
halves() {
    mkdir -p "$1.a" "$1.b"
    leaves | awk 'NR%2==1' | xargs cp -al --parents -t "$1.a" &
    leaves | awk 'NR%2==0' | xargs cp -al --parents -t "$1.b" &
    wait
}
rm_halves() {
    rm -rf "$1.a" &
    rm -rf "$1.b" &
    wait
}
cat > snap.yml <<'YML'
ward: 1
name: snap
vars: { n: x }
steps:
  - id: snap
    action: snapshot.hardlink
    with: { src: current, dir: snaps, name: "{{ n }}", hash: all }
YML
cat > ver.yml <<'YML'
ward: 1
name: ver
vars: { n: x }
steps:
  - id: ver
    action: verify
    with: { path: "snaps/{{ n }}", read: none }
YML
cat > rot.yml <<'YML'
ward: 1
name: rot
vars: { keep: "1" }
steps:
  - id: rot
    action: rotate
    with: { dir: snaps, keep_last: "{{ keep }}", min_keep: 1 }
YML
t() {
    sync
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }
    e=$(date +%s.%N)
    python3 -c "print('%.3f' % ($e - $s))"
}
out=$dir/times
"$ward" run snap.yml --var n=first >/dev/null 2>&1
"$ward" run ver.yml --var n=first >/dev/null 2>&1
for i in $(seq 1 "$rounds"); do
    echo "cp-al $i $(t cp -al other "cp.$i")" | tee -a "$out"
    echo "ward-snapshot $i $(t "$ward" run snap.yml --var n="r$i")" | tee -a "$out"
    "$ward" run ver.yml --var n="r$i" >/dev/null 2>&1
    echo "cp-al-halves $i $(t halves "half.$i")" | tee -a "$out"
    grep -ho "linked [0-9]* entries in [0-9.]*s" "$dir"/logs/*/snap.*.log | tail -1
done
n=$((rounds + 1))
for i in $(seq 1 "$rounds"); do
    echo "rm-rf $i $(t rm -rf "cp.$i")" | tee -a "$out"
    echo "ward-rotate $i $(t "$ward" run rot.yml --var keep=$((n - i)))" | tee -a "$out"
    echo "rm-rf-halves $i $(t rm_halves "half.$i")" | tee -a "$out"
done
python3 - "$out" <<'PY'
import sys, statistics as st, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, _, secs = line.split()
    d[name].append(float(secs))
m = {k: st.median(v) for k, v in d.items()}
for k, v in d.items():
    print("%-14s %s  median %.3f" % (k, " ".join("%.2f" % x for x in v), m[k]))
print("floor: cp-al-halves / cp-al %.2fx   rm-rf-halves / rm-rf %.2fx"
      % (m["cp-al-halves"] / m["cp-al"], m["rm-rf-halves"] / m["rm-rf"]))
print("ward:  snapshot / cp-al %.2fx (/ halves %.2fx)   rotate / rm-rf %.2fx (/ halves %.2fx)"
      % (m["ward-snapshot"] / m["cp-al"], m["ward-snapshot"] / m["cp-al-halves"],
         m["ward-rotate"] / m["rm-rf"], m["ward-rotate"] / m["rm-rf-halves"]))
PY
