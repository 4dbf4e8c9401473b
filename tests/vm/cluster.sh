# tests/vm/cluster.sh: a two-node Corosync + Pacemaker cluster inside the
# test VM, each node in its own network, mount, UTS and PID namespaces
# (sourced by the guest half of tests/vm/test-vm-pacemaker.sh, after
# functions.sh).
#
# What a node owns: its host name; an address on a veth pair between the
# two nodes' network namespaces (alpha 10.99.0.1, beta 10.99.0.2), with its
# own loopback (libqb's IPC sockets are abstract, so per network
# namespace); /run, /dev/shm and /dev/blkmirror (fresh tmpfs); and
# $T/node-NAME/{etc/corosync, etc/blkmirror, var/lib/pacemaker,
# var/lib/corosync, var/lib/blkmirror, var/log} bound on the same paths,
# so that the test (in the VM's first namespaces) can read everything a
# node wrote.  The kernel, and with it /dev/ublk-control and the ublk
# devices, is shared: alpha's device may be /dev/ublkb0 and beta's
# /dev/ublkb1, and /dev/blkmirror/r0 names the right one on each node.
#
# Killing a node (cluster_power_off) cuts its link, then SIGKILLs its PID 1:
# every process of the node dies at once and nothing more leaves it, as
# when a machine loses power.  Its kernel state (a ublk device whose daemon
# died, a file system mounted on it) stays behind, as on a machine that
# hangs; nothing on the other node depends on it.

CLUSTER_NODES=(alpha beta)
declare -A CLUSTER_IP=([alpha]=10.99.0.1 [beta]=10.99.0.2)
declare -A CLUSTER_PID1=()
CLUSTER_CONF=/etc/blkmirror/r0.conf

cluster_check_tools() {
    local t
    for t in corosync pacemakerd crm crm_mon cibadmin nsenter unshare ip pgrep; do
        requires "$t"
    done
    [[ -x /usr/lib/ocf/resource.d/heartbeat/Filesystem ]] ||
        fail "no ocf:heartbeat:Filesystem: run make deps (resource-agents)"
    id hacluster >/dev/null 2>&1 || fail "no user hacluster: run make deps (pacemaker)"
}

# The guest's root is a tmpfs overlay: installing here installs in this VM
# only.  Pacemaker finds the agent under the OCF root, and the agent finds
# mirrord and mirrorctl on PATH, as after make install.
cluster_install() {
    install -D -m 0755 "$BM_SRC/tools/ocf/blkmirror" /usr/lib/ocf/resource.d/blkmirror/blkmirror
    install -m 0755 "$BM_SRC/tools/ocf/blkmirror-cluster-hook" /usr/sbin/blkmirror-cluster-hook
    ln -sf "$MIRRORD" /usr/sbin/mirrord
    ln -sf "$MIRRORCTL" /usr/sbin/mirrorctl
    # crmsh's node commands ping the node by name.
    printf '%s alpha\n%s beta\n' "${CLUSTER_IP[alpha]}" "${CLUSTER_IP[beta]}" >>/etc/hosts
    mkdir -p /dev/blkmirror /etc/corosync /etc/blkmirror /var/lib/pacemaker /var/lib/corosync \
        /var/lib/blkmirror
}

cluster_network() {
    local n
    for n in "${CLUSTER_NODES[@]}"; do
        ip netns add "bmc-$n"
        bm_on_exit ip netns del "bmc-$n"
        ip -n "bmc-$n" link set lo up
    done
    ip link add bmc-alpha type veth peer name bmc-beta
    ip link set bmc-alpha netns bmc-alpha
    ip link set bmc-beta netns bmc-beta
    for n in "${CLUSTER_NODES[@]}"; do
        ip -n "bmc-$n" addr add "${CLUSTER_IP[$n]}/24" dev "bmc-$n"
        ip -n "bmc-$n" link set "bmc-$n" up
    done
}

# cluster_files SIZE [KEY=VALUE...]: per-node directories; the Corosync
# configuration and key, and the resource's configuration (KEY=VALUE lines
# added to [resource]) with its secret, the same on both nodes; a fresh
# backing file of SIZE on each node.
cluster_files() {
    local size=$1 n d kv
    shift
    head -c 256 /dev/urandom >"$T/authkey"
    head -c 48 /dev/urandom | base64 >"$T/r0.secret"
    {
        echo "[resource]"
        echo "name = r0"
        echo "frontend = ublk"
        echo "disk = /var/lib/blkmirror/r0.img"
        echo "control = /run/blkmirror/r0.sock"
        echo "secret-file = /etc/blkmirror/r0.secret"
        for kv; do echo "${kv%%=*} = ${kv#*=}"; done
        for n in "${CLUSTER_NODES[@]}"; do
            printf '\n[node %s]\naddress = %s:7789\n' "$n" "${CLUSTER_IP[$n]}"
        done
    } >"$T/r0.conf"
    cat >"$T/corosync.conf" <<EOF
totem {
    version: 2
    cluster_name: bmtest
    transport: knet
    crypto_cipher: aes256
    crypto_hash: sha256
}
nodelist {
    node {
        ring0_addr: ${CLUSTER_IP[alpha]}
        name: alpha
        nodeid: 1
    }
    node {
        ring0_addr: ${CLUSTER_IP[beta]}
        name: beta
        nodeid: 2
    }
}
quorum {
    provider: corosync_votequorum
    two_node: 1
}
logging {
    to_logfile: yes
    logfile: /var/log/cluster/corosync.log
    to_syslog: no
    to_stderr: no
    timestamp: on
}
EOF
    for n in "${CLUSTER_NODES[@]}"; do
        d=$T/node-$n
        mkdir -p "$d"/etc/{corosync,blkmirror} "$d"/var/lib/{corosync,blkmirror} \
            "$d"/var/log/{cluster,blkmirror,crmsh}
        install -m 0400 "$T/authkey" "$d/etc/corosync/authkey"
        install -m 0644 "$T/corosync.conf" "$d/etc/corosync/corosync.conf"
        install -m 0644 "$T/r0.conf" "$d/etc/blkmirror/r0.conf"
        install -m 0600 "$T/r0.secret" "$d/etc/blkmirror/r0.secret"
        install -d -m 0750 -o hacluster -g haclient "$d"/var/lib/pacemaker \
            "$d"/var/lib/pacemaker/{cib,pengine,blackbox,cores}
        install -d -m 0770 -o hacluster -g haclient "$d/var/log/pacemaker"
        truncate -s "$size" "$d/var/lib/blkmirror/r0.img"
    done
}

# cluster_boot NAME: starts the node; returns once corosync answers and
# pacemakerd runs.  Sets CLUSTER_PID1[NAME] (its PID 1, seen from here).
cluster_boot() {
    local n=$1 d=$T/node-$1 up i
    rm -f "$d/ready"
    ip -n "bmc-$n" link set "bmc-$n" up     # again after a power failure
    ip netns exec "bmc-$n" unshare --mount --uts --pid --fork --mount-proc \
        bash "$BM_SRC/tests/vm/cluster-node.sh" "$n" "$d" >"$d/node.out" 2>&1 &
    up=$!
    bm_kill_at_exit -KILL "$up"
    for ((i = 0; i < 600; i++)); do
        [[ -s $d/ready ]] && break
        bm_alive "$up" || { cat "$d/node.out" >&2; fail "node $n did not start"; }
        sleep 0.2
    done
    [[ -s $d/ready ]] || { cat "$d/node.out" >&2; fail "node $n: no corosync after 120 s"; }
    CLUSTER_PID1[$n]=$(pgrep -P "$up" | head -n1)
    [[ ${CLUSTER_PID1[$n]} =~ ^[0-9]+$ ]] || fail "node $n: no PID 1 under unshare $up"
    bm_kill_at_exit -KILL "${CLUSTER_PID1[$n]}"
}

# nodex NAME CMD...: runs CMD on node NAME (in all its namespaces).  -r
# and -w: entering a mount namespace moves to its root, which is the
# initramfs's, not the root the VM's init chrooted to.
nodex() {
    local n=$1
    shift
    nsenter -t "${CLUSTER_PID1[$n]}" -m -u -n -p -r -w -- "$@"
}

# ctl NAME ARGS...: mirrorctl on node NAME for the resource.
ctl() {
    local n=$1
    shift
    nodex "$n" mirrorctl -c "$CLUSTER_CONF" "$@"
}

# cluster_field NAME FIELD: a field of the node's status --json.
cluster_field() {
    ctl "$1" status --json | bm_json_field "$2"
}

# Both nodes online in Pacemaker's view, with a DC.
cluster_online() {
    local x
    x=$(nodex "$1" crm_mon -1 --output-as=xml 2>/dev/null) || return 1
    [[ $x == *'<current_dc present="true"'* ]] || return 1
    (($(grep -c 'online="true"' <<<"$x") == 2))
}

# cluster_node_offline NAME OTHER: NAME's Pacemaker knows OTHER is gone
# (its resources no longer counted as running there).
cluster_node_offline() {
    local x
    x=$(nodex "$1" crm_mon -1 --output-as=xml 2>/dev/null) || return 1
    grep -q "<node name=\"$2\"[^>]* online=\"false\"" <<<"$x"
}

# cluster_mounted NAME DIR: DIR is a mount point on node NAME.
cluster_mounted() {
    nodex "$1" findmnt -n "$2" >/dev/null 2>&1
}

# cluster_bans NAME: the ids of the node's view of cli-ban constraints.
cluster_bans() {
    local x
    x=$(nodex "$1" cibadmin --query --scope constraints) || fail "cibadmin --query on $1"
    grep -o 'id="cli-ban-[^"]*"' <<<"$x" | sed 's/^id="//; s/"$//' | sort | tr '\n' ' ' | sed 's/ $//'
}

# cluster_power_off NAME: see the top of this file.
cluster_power_off() {
    ip -n "bmc-$1" link set "bmc-$1" down
    kill -KILL "${CLUSTER_PID1[$1]}"
}

# Keeps the nodes' logs on the VM's writable share ($VM_OUT/cluster on the
# host after vm_run).
cluster_keep_logs() {
    bm_on_exit cluster_copy_logs
}
cluster_copy_logs() {
    local n
    [[ -n ${BM_VM_OUT:-} && -d $BM_VM_OUT ]] || return 0
    for n in "${CLUSTER_NODES[@]}"; do
        mkdir -p "$BM_VM_OUT/cluster/$n"
        cp -r "$T/node-$n/var/log/." "$T/node-$n/node.out" "$BM_VM_OUT/cluster/$n/" 2>/dev/null || true
    done
    dmesg >"$BM_VM_OUT/cluster/dmesg.txt" 2>/dev/null || true
}
