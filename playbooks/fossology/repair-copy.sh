#!/bin/bash
# Copies back, from a snapshot, the files a FOSSology repository lost: the
# `copy-missing` step of repair-repository.yml. Its work grows with what was
# lost, not with the repository: the snapshot's names come from its
# manifest, each is looked up in the repository (one stat, no read), and
# only the files missing from the repository are read, checked and copied.
#
# Environment: FROM (the snapshot folder, or a link to it such as
# `latest`), REPO (the repository host folder), REPORT_DIR (where the lists
# are written), DATE (their suffix).
#
# Guarantees:
# - nothing that exists in the repository is overwritten or deleted
#   (rsync --ignore-existing; links are made with `ln`, which never replaces);
# - no file is copied back with wrong content: a content-addressed file
#   (`<sha1>.<md5>.<size>`) is checked against its name (sha1, md5 and size),
#   any other file against its entry in the snapshot's manifest (size, and
#   sha256 when the manifest recorded one), in the snapshot before the copy
#   and in the repository after it. A file that fails is not copied (or is
#   removed again if its copy fails), and is listed in
#   `repair-refused-<DATE>.txt` with the reason;
# - the gold/files archive pairs the snapshot has hard-linked are one file
#   in the repository again.
set -euo pipefail
export LC_ALL=C

: "${FROM:?FROM (the snapshot) is not set}" "${REPO:?REPO is not set}"
: "${REPORT_DIR:?REPORT_DIR is not set}" "${DATE:?DATE is not set}"

set_dir=$(readlink -f -- "$FROM") || true
if [ -z "$set_dir" ] || [ ! -d "$set_dir/repository" ]; then
  echo "snapshot $FROM has no repository/ folder: give an existing snapshot (--var snapshot=<date>)" >&2
  exit 1
fi
snap=$set_dir/repository
live=$REPO
manifest=${set_dir%/*}/.${set_dir##*/}.manifest.json
[ -f "$manifest" ] || manifest=$set_dir/manifest.json

mkdir -p -- "$REPORT_DIR"
work=$(mktemp -d "$REPORT_DIR/.repair-copy.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# Creates folder $1 (and its missing parents) with the owner and mode of its
# twin $2, so FOSSology's agents can still write there.
mkdir_like() {
  [ -d "$1" ] && return 0
  mkdir_like "$(dirname -- "$1")" "$(dirname -- "$2")"
  if mkdir -- "$1" 2> /dev/null; then
    chown --reference="$2" -- "$1" && chmod --reference="$2" -- "$1"
  else
    [ -d "$1" ]
  fi
}

# The snapshot's manifest, if it can be trusted: its own checksum (sha256 of
# the manifest with its checksum, the last field, empty) must match.
manifest_why=""
if [ ! -f "$manifest" ]; then
  manifest_why="no manifest for snapshot $set_dir"
else
  recorded=$(tail -c 66 -- "$manifest")
  actual=$({ head -c -78 -- "$manifest"; printf '"checksum":""}'; } | sha256sum)
  if [ "${recorded:0:64}" != "${actual:0:64}" ]; then
    manifest_why="manifest $manifest is damaged (its checksum does not match its content)"
  fi
fi
# 1. What is missing: the snapshot's file names, from its manifest (one
# file read) when it can be trusted, else from a walk of the snapshot
# (names only); then each name is looked up in the repository (a stat, no
# read): cheaper than a walk of the repository, which opens every one of
# its hashed folders. The lists are one name a line: a name with a newline,
# a backslash or a carriage return (never FOSSology's) is looked up alone
# and refused if missing.
: > "$work/odd"
listed=""
if [ -z "$manifest_why" ]; then
  # One pass, an entry a line (the manifest is one line of JSON; each entry
  # starts with `{`): the repository's files, and what rules the manifest
  # out as a list of names: a path JSON had to escape (a backslash), a path
  # with a `{` (split here), one that is not UTF-8 (`path_hex`), an
  # incremental snapshot.
  tr '{' '\n' < "$manifest" |
    awk -F'"' '$2 == "path" && substr($4, 1, 11) == "repository/" {
                 if ($5 != "," || index($4, "\\") || $6 == "path_hex") exit 4
                 if ($6 == "type" && $8 == "file") print substr($4, 12)
                 next
               }
               /"kind":"incremental","(base|entries)"/ { exit 3 }' > "$work/names" && listed=manifest ||
    case $? in
      3) echo "snapshot $set_dir is incremental: repair from a full snapshot (backup-full.yml makes them)" >&2
         exit 1 ;;
      4) manifest_why="a path in manifest $manifest is not plain text" ;;
      *) echo "cannot read manifest $manifest" >&2; exit 1 ;;
    esac
fi
if [ -n "$listed" ]; then
  # The manifest lists its entries sorted by path (bytes), as comm wants
  # them; sorted again only if it does not.
  sort -c "$work/names" 2> /dev/null || sort -o "$work/names" "$work/names"
  echo "snapshot listed from its manifest"
else
  odd_name=$'*[\\\\\n\r]*'
  (cd -- "$snap" && find . -mindepth 1 -type f \( -name "$odd_name" -fprintf "$work/odd" '%P\0' \
     -o -printf '%P\n' \)) | sort > "$work/names"
  echo "snapshot listed by a walk${manifest_why:+ ($manifest_why)}"
fi
: > "$work/present"
if [ -d "$live" ]; then
  # stat prints the names it finds, in the order given (lstat: a link
  # counts as present); two at once, one per half of the list.
  split -n l/2 -d "$work/names" "$work/half."
  for half in "$work"/half.*; do
    (cd -- "$live" && xargs -r -d '\n' stat --printf='%n\n' -- < "$half" > "$half.found" 2> /dev/null) || true &
  done
  wait
  cat "$work"/half.*.found > "$work/present"
fi
comm -23 "$work/names" "$work/present" > "$work/missing"
: > "$work/refused"
n_odd=0
while IFS= read -r -d '' p; do
  [ ! -e "$live/$p" ] && [ ! -L "$live/$p" ] || continue
  n_odd=$((n_odd + 1))
  shown=${p//$'\n'/\\n}
  printf '%s: name has a newline, backslash or carriage return; copy it by hand\n' "${shown//$'\r'/\\r}" >> "$work/refused"
done < "$work/odd"
echo "files the snapshot has that the repository lacks: $(($(wc -l < "$work/missing") + n_odd))"

# 2. Archive pairs: a lost half of a gold/files pair the snapshot has linked
# is linked to the surviving half (no copy); when both are lost, gold/ is
# copied (and checked) and files/ linked to it after the copy.
: > "$work/copy"
: > "$work/pairs"
linked=0
declare -A queued=()
while IFS= read -r p; do
  case $p in
    gold/* | files/*) ;;
    *) echo "$p" >> "$work/copy"; continue ;;
  esac
  rest=${p#*/}
  if ! [ "$snap/gold/$rest" -ef "$snap/files/$rest" ]; then
    echo "$p" >> "$work/copy"
    continue
  fi
  kind=${p%%/*}
  twin=files
  [ "$kind" = gold ] || twin=gold
  if [ -f "$live/$twin/$rest" ]; then
    mkdir_like "$live/$kind/$(dirname -- "$rest")" "$live/$twin/$(dirname -- "$rest")"
    # An agent may create the same file meanwhile: same name, same content.
    ln -- "$live/$twin/$rest" "$live/$p" 2> /dev/null || [ -e "$live/$p" ]
    linked=$((linked + 1))
  elif [ -z "${queued[$rest]:-}" ]; then
    queued[$rest]=1
    echo "gold/$rest" >> "$work/copy"
    echo "$rest" >> "$work/pairs"
  fi
done < "$work/missing"

# 3. The check. `check ROOT LIST OK`: the files of LIST (paths under ROOT)
# whose content matches their name or manifest entry are written to OK;
# the others are added to the refused list with the reason.
manifest_entries() {
  # Once, and only if a file needs it: `path<TAB>size<TAB>sha256-or-dash` of
  # every file in the (checked) manifest.
  [ -f "$work/entries" ] && return 0
  if [ -n "$manifest_why" ]; then
    echo "$manifest_why" > "$work/entries.why"
    : > "$work/entries"
    return 0
  fi
  tr '{' '\n' < "$manifest" |
    awk -F'"' '$2 == "path" && substr($4, 1, 11) == "repository/" && $6 == "type" && $8 == "file" {
                 size = $11; gsub(/[^0-9]/, "", size)
                 print substr($4, 12) "\t" size "\t" ($14 == "sha256" ? $16 : "-")
               }' > "$work/entries"
}

check() {
  local root=$1 list=$2 ok=$3 label=$4
  : > "$ok"
  [ -s "$list" ] || return 0
  # Content-addressed names (FOSSology's gold/ and files/): the name is the checksum.
  { grep -E '(^|/)[0-9a-f]{40}\.[0-9a-f]{32}\.[0-9]+$' -- "$list" || true; } > "$work/named"
  { grep -v -E '(^|/)[0-9a-f]{40}\.[0-9a-f]{32}\.[0-9]+$' -- "$list" || true; } > "$work/other"
  : > "$work/sha1" > "$work/md5" > "$work/size" > "$work/sha256"
  if [ -s "$work/named" ]; then
    # sha1 and md5 at the same time (a file read twice is read once from disk).
    (cd -- "$root" && xargs -r -d '\n' sha1sum -- < "$work/named" > "$work/sha1" 2> /dev/null) || true &
    (cd -- "$root" && xargs -r -d '\n' md5sum -- < "$work/named" > "$work/md5" 2> /dev/null) || true
    wait $!
  fi
  if [ -s "$work/other" ]; then
    manifest_entries
    (cd -- "$root" && xargs -r -d '\n' sha256sum -- < "$work/other" > "$work/sha256" 2> /dev/null) || true
  fi
  (cd -- "$root" && xargs -r -d '\n' stat -c '%s %n' -- < "$list" > "$work/size" 2> /dev/null) || true
  local why="" entries=/dev/null
  [ ! -f "$work/entries.why" ] || why=$(cat "$work/entries.why")
  [ ! -f "$work/entries" ] || entries=$work/entries
  awk -v ok="$ok" -v refused="$work/refused" -v nomanifest="$why" -v label="$label" '
    FILENAME == ARGV[1] { sha1[substr($0, 43)] = $1; next }
    FILENAME == ARGV[2] { md5[substr($0, 35)] = $1; next }
    FILENAME == ARGV[3] { sha256[substr($0, 67)] = $1; next }
    FILENAME == ARGV[4] { i = index($0, " "); size[substr($0, i + 1)] = substr($0, 1, i - 1); next }
    FILENAME == ARGV[5] { split($0, e, "\t"); want_size[e[1]] = e[2]; want_sha256[e[1]] = e[3]; next }
    {
      p = $0; why = ""
      n = split(p, part, "/"); split(part[n], name, ".")
      if (!(p in size)) why = "cannot be read"
      else if (part[n] ~ /^[0-9a-f]+\.[0-9a-f]+\.[0-9]+$/ && length(name[1]) == 40 && length(name[2]) == 32) {
        if (!(p in sha1) || !(p in md5)) why = "cannot be read"
        else if (size[p] != name[3]) why = "size " size[p] " does not match its name"
        else if (sha1[p] != name[1]) why = "sha1 " sha1[p] " does not match its name"
        else if (md5[p] != name[2]) why = "md5 " md5[p] " does not match its name"
      } else if (nomanifest != "") why = "not content-addressed and " nomanifest
      else if (!(p in want_size)) why = "not in the snapshot manifest"
      else if (size[p] != want_size[p]) why = "size " size[p] " does not match the manifest (" want_size[p] ")"
      else if (want_sha256[p] != "-" && sha256[p] != want_sha256[p]) why = "sha256 does not match the manifest"
      if (why == "") print p > ok
      else print p ": " label why >> refused
    }' "$work/sha1" "$work/md5" "$work/sha256" "$work/size" "$entries" "$list"
}

# Before the copy, in the snapshot: what fails is never copied.
check "$snap" "$work/copy" "$work/good" ""
copied=0
if [ -s "$work/good" ]; then
  mkdir -p -- "$live"
  # Only the listed files (no -r): rsync writes each under a temp name and
  # renames it, and prints the name of each file it wrote.
  rsync -a --numeric-ids --ignore-existing --files-from="$work/good" --out-format='%n' \
    -- "$snap/" "$live/" > "$work/written"
  { grep -v '/$' "$work/written" || true; } > "$work/wrote"
  # After the copy, in the repository, the files this run wrote: a copy
  # that does not match (the snapshot changed meanwhile, a failing disk) is
  # removed again. Files an agent made meanwhile are not touched.
  check "$live" "$work/wrote" "$work/copied" "copied, then removed again: "
  sort "$work/wrote" > "$work/wrote.sorted"
  sort "$work/copied" > "$work/copied.sorted"
  comm -23 "$work/wrote.sorted" "$work/copied.sorted" | while IFS= read -r p; do
    rm -f -- "$live/$p"
  done
  copied=$(wc -l < "$work/copied")
fi

# 4. The files/ half of each pair whose gold/ half was just copied.
while IFS= read -r rest; do
  [ -f "$live/gold/$rest" ] || continue
  mkdir_like "$live/files/$(dirname -- "$rest")" "$snap/files/$(dirname -- "$rest")"
  ln -- "$live/gold/$rest" "$live/files/$rest" 2> /dev/null || [ -e "$live/files/$rest" ]
  linked=$((linked + 1))
done < "$work/pairs"

echo "copied back: $copied file(s); re-linked: $linked archive half(s)"
dest=$REPORT_DIR/repair-refused-$DATE.txt
sort -u "$work/refused" > "$dest.tmp" && sync "$dest.tmp" && mv -f "$dest.tmp" "$dest"
if [ -s "$dest" ]; then
  {
    echo "not copied back, $(wc -l < "$dest") file(s) of snapshot $set_dir that fail their check (listed in $dest):"
    head -n 20 "$dest" | sed 's/^/  /'
  } >&2
fi
