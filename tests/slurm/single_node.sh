#!/usr/bin/env bash
# A real single-node SLURM on this machine, for the tests: Debian's slurm-wlm (22.05)
# and munge, run as root. It has a `cpu` and a `gpu` partition on the one node; the
# node's GPU is a gres backed by /dev/null, so jobs that ask for a GPU are scheduled
# as on a cluster (and run on the CPU).
#
#   tests/slurm/single_node.sh install   # apt-get the packages if they are missing
#   tests/slurm/single_node.sh start     # start munged, slurmctld, slurmd; wait for the node
#   tests/slurm/single_node.sh stop      # stop the daemons this script started
#
# The configuration goes where clients look by default, /etc/slurm/slurm.conf (the
# executor plugin drops SLURM_* variables such as SLURM_CONF from the jobs it submits);
# state and daemon logs go to $AUGBENCH_SLURM_DIR (default /tmp/augbench-slurm).
# An /etc/slurm/slurm.conf that this script did not write is never touched.
set -euo pipefail

STATE=${AUGBENCH_SLURM_DIR:-/tmp/augbench-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by augbench tests/slurm/single_node.sh"
NODE=$(hostname -s)
CPUS=$(nproc)

install() {
    if command -v slurmctld > /dev/null && command -v munged > /dev/null; then
        return
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
}

write_config() {
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        echo "$CONF exists and is not this script's: not starting a test cluster over it" >&2
        exit 1
    fi
    mkdir -p "$STATE/ctld" "$STATE/d" "$STATE/munge" /etc/slurm
    # Memory is not scheduled (CR_Core), and config_overrides lets the node declare
    # more memory than this machine has, so jobs may ask for what a cluster GPU node has.
    cat > "$CONF" << EOF
$MARK
ClusterName=augbench
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
SchedulerParameters=sched_interval=1
GresTypes=gpu
NodeName=$NODE CPUs=$CPUS RealMemory=128000 Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    printf '%s\nNodeName=%s Name=gpu File=/dev/null\n' "$MARK" "$NODE" > /etc/slurm/gres.conf
}

start() {
    install
    write_config
    if ! pgrep -x munged > /dev/null; then
        mkdir -p /run/munge
        chown munge:munge /run/munge
        # munged as its own user, as the Debian service runs it.
        su -s /bin/sh munge -c "munged --pid-file=$STATE/munge/munged.pid" || munged --force
        echo started > "$STATE/munge/started-here"
    fi
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    for _ in $(seq 60); do
        if sinfo -h -N -o "%t" 2> /dev/null | grep -qE "idle|mix|alloc"; then
            echo "SLURM is up ($CONF)"
            sinfo
            return
        fi
        sleep 1
    done
    echo "SLURM did not come up; see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
    sinfo -N -l >&2 || true
    exit 1
}

stop() {
    for daemon in slurmd slurmctld; do
        if [ -f "$STATE/$daemon.pid" ]; then
            kill "$(cat "$STATE/$daemon.pid")" 2> /dev/null || true
        fi
    done
    if [ -f "$STATE/munge/started-here" ]; then
        pkill -x munged || true
        rm -f "$STATE/munge/started-here"
    fi
    if [ -f "$CONF" ] && grep -qF "$MARK" "$CONF"; then
        rm -f "$CONF" /etc/slurm/gres.conf
    fi
    for _ in $(seq 20); do
        pgrep -x slurmctld > /dev/null || pgrep -x slurmd > /dev/null || return 0
        sleep 0.5
    done
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 install|start|stop" >&2
        exit 2
        ;;
esac
