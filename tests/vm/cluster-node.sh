#!/usr/bin/env bash
# tests/vm/cluster-node.sh NAME DIR: PID 1 of one cluster node in the test
# VM (tests/vm/cluster.sh starts it in fresh network, mount, UTS and PID
# namespaces).  It makes the node's own what Corosync, Pacemaker and
# mirrord keep per host: the host name, /run, /dev/shm (libqb's IPC
# buffers), /dev/blkmirror, and DIR/{etc/corosync, etc/blkmirror,
# var/lib/...,var/log} bound on the paths of the same names; starts
# corosync and pacemakerd, writes DIR/ready, and then only reaps orphans
# (mirrord double-forks) until it is killed: SIGKILL to this process is
# the node's power failing, every process of the node dies at once.
set -eu
name=$1 dir=$2

hostname "$name"
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/lock /run/blkmirror
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /dev/blkmirror
for d in etc/corosync etc/blkmirror var/lib/pacemaker var/lib/corosync var/lib/blkmirror var/log; do
    mount --bind "$dir/$d" "/$d"
done

corosync -f >"$dir/var/log/corosync.out" 2>&1 &
for _ in $(seq 300); do
    corosync-cfgtool -s >/dev/null 2>&1 && break
    sleep 0.2
done
corosync-cfgtool -s >/dev/null 2>&1 || { echo "$name: corosync did not start" >&2; exit 1; }
pacemakerd >"$dir/var/log/pacemakerd.out" 2>&1 &
echo "$$" >"$dir/ready"

# bash reaps every child it has, adopted ones too, when they end.
while :; do
    sleep 1 &
    wait $! || true
done
