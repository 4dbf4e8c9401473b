#!/usr/bin/env bash
# The man pages: every man/*.[0-9] is clean under `mandoc -Tlint -W warning`
# (no output, exit 0), and they keep up with the code:
#  - every [resource] key of daemon/conf.c's key table (conf_resource_keys),
#    and the [node] key, has an entry `.It Ic KEY` in blkmirror.conf.5;
#  - every command tools/mirrorctl.c accepts (daemon_cmds plus the
#    strcmp(cmd, "...") ones) has an entry `.It Ic CMD` in mirrorctl.8;
#  - every long option of mirrord and mirrorctl appears as `Fl -NAME` in
#    its page;
#  - every field of the `status --json` object (daemon/commands.c,
#    cmd_status, and the resync object of cmd_resync) has an entry
#    `.It Li FIELD` (or a line `.Li FIELD`) in mirrorctl.8.
#
# BM_SRC: the repository root (default: two directories up from here).
# Needs no build.  Exit 0 when everything holds, 1 otherwise.
# timeout: 30
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=${BM_SRC:-$here/../..}
cd "$src"

fail=0
err() {
	echo "FAIL: $*" >&2
	fail=1
}

if ! command -v mandoc >/dev/null 2>&1; then
	echo "FAIL: mandoc not found (apt-get install mandoc)" >&2
	exit 1
fi

# ---- lint ----
shopt -s nullglob
pages=(man/*.[0-9])
shopt -u nullglob
if [ ${#pages[@]} -eq 0 ]; then
	echo "FAIL: no man pages in $src/man" >&2
	exit 1
fi
for p in mirrord.8 mirrorctl.8 blkmirror.conf.5; do
	[ -f "man/$p" ] || err "man/$p is missing"
done
rc=0
out=$(mandoc -Tlint -W warning "${pages[@]}" 2>&1) || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
	err "mandoc -Tlint -W warning ${pages[*]} (exit $rc):"
	printf '%s\n' "$out" >&2
fi

# has_entry PAGE MACRO WORD: PAGE has a list entry ".It MACRO WORD" (WORD
# first on the .It line, or after a comma for entries that name several).
has_entry() {
	local page=$1 macro=$2 word=$3 re
	re=$(printf '%s' "$word" | sed 's/[.[\*^$/]/\\&/g')
	grep -Eq "^\\.It (.* , )?$macro $re( |\$)" "$page"
}

# ---- config keys ----
conf_page=man/blkmirror.conf.5
keys=$(sed -n '/conf_resource_keys\[\] = {/,/^};/p' daemon/conf.c |
	grep -o '^[[:space:]]*{ "[a-z0-9-]*"' | grep -o '"[^"]*"' | tr -d '"')
nkeys=$(printf '%s\n' "$keys" | grep -c . || true)
want=$(sed -n 's/^#define CONF_RESOURCE_NKEYS \([0-9]*\).*/\1/p' daemon/conf.c)
if [ "$nkeys" -eq 0 ] || [ "$nkeys" != "$want" ]; then
	err "found $nkeys keys in daemon/conf.c's conf_resource_keys, expected" \
	    "CONF_RESOURCE_NKEYS = ${want:-?}: update this test's extraction"
fi
node_keys=$(grep -o 'strcmp(x->key, "[a-z0-9-]*")' daemon/conf.c |
	grep -o '"[^"]*"' | tr -d '"' | sort -u)
[ -n "$node_keys" ] || err "found no [node] key in daemon/conf.c"
for k in $keys $node_keys; do
	has_entry "$conf_page" Ic "$k" || err "$conf_page: no '.It Ic $k' for config key '$k'"
done

# ---- mirrorctl commands ----
ctl_page=man/mirrorctl.8
cmds=$( {
	sed -n '/daemon_cmds\[\] = {/,/};/p' tools/mirrorctl.c | grep -o '"[a-z-]*"'
	grep -o 'strcmp(cmd, "[a-z-]*")' tools/mirrorctl.c | grep -o '"[a-z-]*"'
} | tr -d '"' | sort -u)
ncmds=$(printf '%s\n' "$cmds" | grep -c . || true)
[ "$ncmds" -ge 2 ] || err "found only $ncmds commands in tools/mirrorctl.c: update this test"
for c in $cmds; do
	has_entry "$ctl_page" Ic "$c" || err "$ctl_page: no '.It Ic $c' for command '$c'"
done

# ---- long options ----
# long_opts FILE: the names in the file's `struct option` table.
long_opts() {
	sed -n '/struct option [a-z]*\[\] = {/,/};/p' "$1" |
		grep -o '{ "[a-z-]*"' | grep -o '"[^"]*"' | tr -d '"'
}
check_opts() {
	local code=$1 page=$2 o n=0
	for o in $(long_opts "$code"); do
		n=$((n + 1))
		grep -q "Fl -$o\\b" "$page" || err "$page: option --$o of $code is not documented"
	done
	[ "$n" -gt 0 ] || err "found no long options in $code: update this test"
}
check_opts daemon/mirrord.c man/mirrord.8
check_opts tools/mirrorctl.c "$ctl_page"

# ---- status --json fields ----
fields=$(sed -n '/^cmd_status(/,/^}/p; /^cmd_resync(/,/^}/p' daemon/commands.c |
	grep -o 'json_object_object_add([a-z]*, "[a-z_]*"' | grep -o '"[^"]*"' |
	tr -d '"' | sort -u)
[ -n "$fields" ] || err "found no status fields in daemon/commands.c: update this test"
for f in done_percent bytes_per_sec eta_s; do
	printf '%s\n' "$fields" | grep -qx "$f" ||
		err "status field '$f' not found in daemon/commands.c's cmd_resync: update this test"
done
for f in $fields; do
	has_entry "$ctl_page" Li "$f" || grep -q "^\\.Li $f\\b" "$ctl_page" ||
		err "$ctl_page: status field '$f' is not documented"
done

if [ "$fail" -ne 0 ]; then
	exit 1
fi
echo "ok: ${#pages[@]} pages lint clean; $nkeys+$(printf '%s\n' "$node_keys" | grep -c .) keys," \
     "$ncmds commands, options and status fields documented"
