#!/bin/bash
# Checks run by the first steps of the FOSSology playbooks (see
# docs/fossology.md). Everything comes in through the environment, so no
# path is ever pasted into shell code; each failure prints one line that
# names what is wrong and what to change, and exits 1 (a failed step).
#
#   fossology-check.sh backup    read fossology.conf and Db.conf, check that
#                                the repository looks like FOSSology's
#   fossology-check.sh restore   the same, but the repository may be empty
#                                or missing (it is created)
#   fossology-check.sh cluster   make sure a PostgreSQL cluster answers,
#                                creating one with $CREATE_CLUSTER if none does
#
# Environment (from the playbook's vars):
#   FOSSOLOGY_CONF     fossology.conf, or `none`
#   FOSSOLOGY_DB_CONF  Db.conf, or `none`
#   REPO               the repository host folder the playbook's steps use
#   REPO_LINK          the symbolic link ward keeps at the derived folder; when
#                      REPO is this link, REPO is derived from fossology.conf,
#                      otherwise REPO was given (--var repo=...) and is used as is
#   FOSSOLOGY_DB       the database the playbook's queries use
#   MAKE_REPO          restore: `false` when the repository is not restored
#   PGHOST, PGPORT, PGUSER, CREATE_CLUSTER, PG_MAJOR (cluster)
set -o errexit -o nounset -o pipefail

fail() {
    echo "$*" >&2
    exit 1
}

# Prints the value of `key` in `[section]` of an INI file the way FOSSology
# reads it (glib key files: `key = value`, `;`/`#` comments). Repeated keys
# (`localhost[] = ...`) print one line each.
ini_get() {
    awk -v want_section="$2" -v want_key="$3" '
        /^[ \t]*[;#]/ { next }
        /^[ \t]*\[/ {
            s = $0; sub(/^[ \t]*\[/, "", s); sub(/\][ \t]*$/, "", s); section = s; next
        }
        section == want_section && index($0, "=") > 0 {
            k = substr($0, 1, index($0, "=") - 1); v = substr($0, index($0, "=") + 1)
            gsub(/^[ \t]+|[ \t]+$/, "", k); gsub(/^[ \t]+|[ \t]+$/, "", v)
            if (k == want_key) print v
        }' "$1"
}

# Prints every key of `[section]`, one a line, `[]` removed.
ini_keys() {
    awk -v want_section="$2" '
        /^[ \t]*[;#]/ { next }
        /^[ \t]*\[/ {
            s = $0; sub(/^[ \t]*\[/, "", s); sub(/\][ \t]*$/, "", s); section = s; next
        }
        section == want_section && index($0, "=") > 0 {
            k = substr($0, 1, index($0, "=") - 1)
            gsub(/^[ \t]+|[ \t]+$/, "", k); sub(/\[\]$/, "", k); print k
        }' "$1"
}

# Sets REPO_DIR (the host folder) and DEPTH from fossology.conf, or from REPO
# when it was given.
read_fossology_conf() {
    DEPTH=3
    local given=yes
    [ "$REPO" = "$REPO_LINK" ] && given=no
    if [ "$FOSSOLOGY_CONF" = none ] || [ ! -e "$FOSSOLOGY_CONF" ]; then
        if [ "$given" = no ]; then
            [ "$FOSSOLOGY_CONF" = none ] &&
                fail "fossology_conf is none, so the repository must be given: --var repo=<path>/<host> (fossology.conf's [FOSSOLOGY] path and its [REPOSITORY] host)"
            fail "cannot find FOSSology's configuration at $FOSSOLOGY_CONF: pass --var fossology_conf=<sysconfdir>/fossology.conf (Debian packages: /etc/fossology/fossology.conf), or the repository itself with --var repo=<path>/<host>"
        fi
        echo "no fossology.conf read ($FOSSOLOGY_CONF); repository as given: $REPO, depth $DEPTH (FOSSology's default)"
        REPO_DIR=$REPO
        return
    fi
    [ -r "$FOSSOLOGY_CONF" ] || fail "cannot read $FOSSOLOGY_CONF (run ward as root, or fix its permissions)"
    local path depth hosts count
    path=$(ini_get "$FOSSOLOGY_CONF" FOSSOLOGY path | tail -n 1)
    depth=$(ini_get "$FOSSOLOGY_CONF" FOSSOLOGY depth | tail -n 1)
    if [ -n "$depth" ]; then
        [[ "$depth" =~ ^[0-9]+$ ]] && [ "$depth" -ge 1 ] && [ "$depth" -le 20 ] ||
            fail "$FOSSOLOGY_CONF: [FOSSOLOGY] depth is '$depth', not a number of folder levels (FOSSology's default is 3)"
        DEPTH=$depth
    fi
    hosts=$(ini_keys "$FOSSOLOGY_CONF" REPOSITORY | sort -u)
    count=$(printf '%s' "$hosts" | grep -c . || true)
    if [ "$given" = yes ]; then
        echo "repository as given: $REPO (fossology.conf: path ${path:-unset}, depth $DEPTH)"
        REPO_DIR=$REPO
        return
    fi
    [ -n "$path" ] || fail "$FOSSOLOGY_CONF has no [FOSSOLOGY] path: fix FOSSology's configuration, or pass --var repo=<repository>/<host>"
    [ "$count" -ge 1 ] || fail "$FOSSOLOGY_CONF has no [REPOSITORY] entries (FOSSology's default: localhost[] = * 00 ff): fix FOSSology's configuration, or pass --var repo=<path>/<host>"
    if [ "$count" -gt 1 ]; then
        fail "$FOSSOLOGY_CONF splits the repository across hosts ($(printf '%s' "$hosts" | paste -sd, -)); these playbooks copy one host's folder: run them once per host with --var repo=$path/<host>"
    fi
    REPO_DIR="${path%/}/$hosts"
    echo "fossology.conf: path $path, depth $DEPTH, one repository host '$hosts': $REPO_DIR"
}

# Compares Db.conf's dbname with the database the playbook queries. Only the
# dbname entry is read: Db.conf's password never leaves the file.
check_db_conf() {
    if [ "$FOSSOLOGY_DB_CONF" = none ] || [ ! -e "$FOSSOLOGY_DB_CONF" ]; then
        echo "no Db.conf read ($FOSSOLOGY_DB_CONF); database as given: $FOSSOLOGY_DB"
        return
    fi
    [ -r "$FOSSOLOGY_DB_CONF" ] || fail "cannot read $FOSSOLOGY_DB_CONF (run ward as root, or fix its permissions)"
    local dbname
    dbname=$(tr ';' '\n' < "$FOSSOLOGY_DB_CONF" |
        sed -n 's/^[[:space:]]*dbname[[:space:]]*=[[:space:]]*//p' | sed 's/[[:space:]]*$//' | tail -n 1)
    [ -n "$dbname" ] || fail "$FOSSOLOGY_DB_CONF has no dbname=...; entry: fix FOSSology's configuration, or pass --var fossology_db_conf=none"
    [ "$dbname" = "$FOSSOLOGY_DB" ] ||
        fail "$FOSSOLOGY_DB_CONF names the database '$dbname' but the playbook would use '$FOSSOLOGY_DB': pass --var fossology_db=$dbname"
    echo "Db.conf: database $dbname"
}

# Refuses a folder that does not look like FOSSology's repository host folder.
check_repository() {
    local hint=""
    if [ -d "$REPO_DIR" ] && [ ! -d "$REPO_DIR/gold" ]; then
        local sub
        for sub in "$REPO_DIR"/*/gold; do
            [ -d "$sub" ] && hint=" ($(dirname "$sub") has one: is that the repository host folder?)" && break
        done
    fi
    [ -d "$REPO_DIR" ] || fail "the repository $REPO_DIR does not exist: fix fossology.conf's [FOSSOLOGY] path, or pass --var repo=<path>/<host>"
    [ -d "$REPO_DIR/gold" ] || fail "$REPO_DIR does not look like FOSSology's repository: it has no gold/ folder$hint; fix fossology.conf's [FOSSOLOGY] path, or pass --var repo=<path>/<host>"
    # One line per file of gold/: "<depth> <path below gold>"; awk reports the
    # first file not at <aa>/<bb>/.../<name> (DEPTH pairs of the lower-cased
    # name), as FOSSology's fo_RepMkPath lays them out, and counts them all.
    local verdict
    verdict=$(find "$REPO_DIR/gold" -type f -printf '%d %P\n' | awk -v depth="$DEPTH" '
        {
            n++
            if (bad != "") next
            rel = substr($0, index($0, " ") + 1)
            parts = split(rel, p, "/")
            name = tolower(p[parts])
            if (parts != depth + 1) { bad = rel; next }
            for (i = 1; i <= depth; i++)
                if (p[i] != substr(name, 2 * i - 1, 2)) { bad = rel; next }
        }
        END { print n + 0; print bad }') ||
        fail "cannot list $REPO_DIR/gold (the error is above): check the repository's permissions and disk"
    local files bad
    files=$(printf '%s\n' "$verdict" | sed -n 1p)
    bad=$(printf '%s\n' "$verdict" | sed -n 2p)
    [ "$files" -gt 0 ] || fail "$REPO_DIR/gold is empty: this is not a FOSSology repository with uploads (wrong path, or a disk not mounted?); nothing was stopped"
    [ -z "$bad" ] || fail "$REPO_DIR/gold/$bad is not where FOSSology's depth $DEPTH puts it (<2 chars>/... $DEPTH folder levels named after the file): check [FOSSOLOGY] depth in fossology.conf, or --var repo"
    echo "repository $REPO_DIR: $files gold files, all at depth $DEPTH"
}

# Points REPO_LINK at REPO_DIR (atomically: a new link renamed over the old one).
point_link() {
    [ "$REPO" = "$REPO_LINK" ] || return 0
    local dir
    dir=$(dirname "$REPO_LINK")
    mkdir -p -- "$dir"
    # Whoever can write this folder can redirect the link, and with it what
    # a restore overwrites: it must be ours and closed to others.
    local owner mode
    read -r owner mode < <(stat -c '%u %a' -- "$dir")
    if [ "$owner" != "$(id -u)" ] || [ $((8#$mode & 8#022)) -ne 0 ]; then
        fail "$dir (work_dir) is owned by uid $owner with mode $mode: it must belong to the user running ward and not be writable by others (chown $(id -un) and chmod go-w it, or pass --var work_dir=<another folder>)"
    fi
    if [ -e "$REPO_LINK" ] && [ ! -L "$REPO_LINK" ]; then
        fail "$REPO_LINK is not a symbolic link: ward keeps a link to the repository there; move it away or pass --var work_dir=<another folder>"
    fi
    ln -sfn -- "$REPO_DIR" "$REPO_LINK.new"
    mv -fT -- "$REPO_LINK.new" "$REPO_LINK"
    sync -f -- "$dir"
    echo "$REPO_LINK -> $REPO_DIR"
}

ensure_cluster() {
    command -v pg_isready > /dev/null ||
        fail "pg_isready is not installed: install PostgreSQL's client programs (Debian: postgresql-client)"
    local rc=0
    pg_isready -q || rc=$?
    case $rc in
        0) echo "PostgreSQL answers at ${PGHOST}:${PGPORT}"; return ;;
        1) echo "PostgreSQL at ${PGHOST}:${PGPORT} rejects connections (starting up?); waiting" ;;
        2)
            [ "$CREATE_CLUSTER" = none ] &&
                fail "no PostgreSQL answers at ${PGHOST}:${PGPORT} and create_cluster is none: create and start an empty cluster there (initdb, or pg_createcluster on Debian), or pass --var create_cluster='<command>'"
            if [ "$PG_MAJOR" = auto ]; then
                # No /usr/lib/postgresql at all makes find fail: that is the
                # "nothing installed" answer below, not an error of its own.
                PG_MAJOR=$({ find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' -printf '%P\n' 2> /dev/null || true; } |
                    cut -d/ -f1 | sort -V | tail -n 1)
                [ -n "$PG_MAJOR" ] || fail "no PostgreSQL server is installed under /usr/lib/postgresql (pg_major auto): install one, or pass --var pg_major=<version>"
            fi
            export PG_MAJOR
            echo "no PostgreSQL answers at ${PGHOST}:${PGPORT}: creating a cluster: $CREATE_CLUSTER"
            rc=0
            bash -o errexit -o nounset -o pipefail -c "$CREATE_CLUSTER" || rc=$?
            [ "$rc" = 0 ] || fail "create_cluster failed (exit code $rc): $CREATE_CLUSTER"
            ;;
        *) fail "pg_isready cannot check ${PGHOST}:${PGPORT} (exit code $rc): check pg_host and pg_port" ;;
    esac
    local i
    for i in $(seq 1 600); do
        rc=0
        pg_isready -q || rc=$?
        [ "$rc" = 0 ] && echo "PostgreSQL answers at ${PGHOST}:${PGPORT}" && return
        sleep 0.1
    done
    fail "PostgreSQL at ${PGHOST}:${PGPORT} does not accept connections 60s after create_cluster; see the server's log"
}

case "${1:-}" in
    backup)
        read_fossology_conf
        check_db_conf
        check_repository
        point_link
        ;;
    restore)
        read_fossology_conf
        check_db_conf
        # The rsync that restores the repository writes through the link, so
        # its target must exist; a database-only restore creates nothing.
        if [ "${MAKE_REPO:-true}" = true ] && [ ! -d "$REPO_DIR" ]; then
            mkdir -p -- "$REPO_DIR"
            echo "created the empty repository folder $REPO_DIR"
        fi
        point_link
        ;;
    cluster)
        ensure_cluster
        ;;
    *)
        echo "usage: fossology-check.sh backup|restore|cluster" >&2
        exit 2
        ;;
esac
