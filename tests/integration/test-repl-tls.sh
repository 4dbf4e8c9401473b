#!/usr/bin/env bash
# TLS on the replication link: with certificates from a test CA the nodes
# connect, sync and mirror writes; a node whose certificate comes from
# another CA is refused (and keeps serving), as is one whose certificate,
# from the right CA, names another node, and one without TLS.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires openssl
requires fio
bm_setup

# A CA, a certificate per node (its CN is the node name), a certificate of
# that CA for a node "gamma" of no resource, and a rogue CA with its own
# "alpha".
mkcert() {   # mkcert NAME CA
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$T/$1.key" -out "$T/$1.csr" 2>/dev/null
    openssl x509 -req -in "$T/$1.csr" -CA "$T/$2.crt" -CAkey "$T/$2.key" -CAcreateserial \
        -days 2 -out "$T/$1.crt" 2>/dev/null
}
for ca in ca rogue; do
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=$ca" -keyout "$T/$ca.key" -out "$T/$ca.crt" 2>/dev/null
done
mkcert alpha ca; mkcert beta ca; mkcert gamma ca; mkcert alpha-rogue rogue
chmod 600 "$T"/*.key

bm_pair 64M tls-ca="$T/ca.crt" tls-cert="$T/alpha.crt" tls-key="$T/alpha.key"
sed -i "s|^tls-cert = .*|tls-cert = $T/beta.crt|; s|^tls-key = .*|tls-key = $T/beta.key|" "$CB"
bm_stop "$PB"
bm_start "$CB" beta; PB=$BM_PID
mark=$(wc -l < "$T/ra-alpha.log")
bm_pair_initial_sync
fio --name=w --ioengine=nbd --uri="$UA" --rw=randwrite --bs=4k-128k --iodepth=16 \
    --size=32M --verify=crc32c --do_verify=1 --verify_state_save=0 \
    --output="$T/fio.txt" >/dev/null || fail "fio over the TLS link failed"
ctla wait-sync --timeout 30 || fail "not in sync over TLS"
# No TLS complaint on the good path (beta's restart above may cause some).
tail -n +"$((mark + 1))" "$T/ra-alpha.log" | grep "TLS" && fail "TLS warnings in alpha's log"
bm_stop "$PA"
assert_disks_equal "disks differ after TLS replication"

# alpha with a certificate from another CA: refused both ways.
sed -i "s|^tls-cert = .*|tls-cert = $T/alpha-rogue.crt|; s|^tls-key = .*|tls-key = $T/alpha-rogue.key|" "$CA"
bm_start "$CA" alpha; PA=$BM_PID
wait_for 20 grep -q "TLS handshake failed" "$T/rb-beta.log"
sleep 1
assert_eq "$(field "$CB" connection)" connecting "beta refuses a certificate from another CA"
assert_eq "$(field "$CA" connection)" connecting "alpha does not get through"
assert_eq "$(field "$CB" role)" secondary "beta keeps serving"
bm_stop "$PA"

# alpha with a certificate of the right CA for another node: refused, and
# beta's log names the name it expected and the one it got.
sed -i "s|^tls-cert = .*|tls-cert = $T/gamma.crt|; s|^tls-key = .*|tls-key = $T/gamma.key|" "$CA"
bm_start "$CA" alpha; PA=$BM_PID
wait_for 20 grep -q "expected node alpha, certificate is for CN=gamma" "$T/rb-beta.log"
wait_for 20 grep -q "peer refused our TLS certificate" "$T/ra-alpha.log"
assert_eq "$(field "$CB" connection)" connecting "beta refuses a certificate for another node"
assert_eq "$(field "$CA" connection)" connecting "alpha as gamma does not get through"
bm_stop "$PA"

# alpha without TLS at all: refused too.
sed -i '/^tls-/d' "$CA"
before=$(grep -c "TLS handshake failed" "$T/rb-beta.log")
bm_start "$CA" alpha; PA=$BM_PID
wait_for 20 sh -c "[ \$(grep -c 'TLS handshake failed' $T/rb-beta.log) -gt $before ]"
assert_eq "$(field "$CB" connection)" connecting "beta refuses a peer without TLS"
