# Narration for make demo, sourced by demo.sh and demo/vm-guest.sh.
PY=/usr/bin/python3   # Debian's, as in tests/integration

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '(%s)\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
# run CMD...: echo the command, quoted as one would type it, then run it.
run() {
	local a out=
	for a; do
		if [[ $a =~ ^[-A-Za-z0-9_./:=+,@%]+$ ]]; then out+=" $a"; else out+=" '${a//\'/\'\\\'\'}'"; fi
	done
	printf '$%s\n' "$out"
	"$@"
}
# field NODE EXPR: one field of "mirrorctl status --json" (.role, .peer.disk).
field() {
	mirrorctl -c "$1.conf" --node "$1" status --json | "$PY" -c '
import json, sys
v = json.load(sys.stdin)
for k in filter(None, sys.argv[1].split(".")):
    v = v.get(k) if isinstance(v, dict) else None
print(v if isinstance(v, str) else json.dumps(v))' "$2"
}
