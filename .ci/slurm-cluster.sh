#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for testing the slurm profile for real.
#   .ci/slurm-cluster.sh start   # install (Debian packages) if needed, configure, start munge + SLURM
#   .ci/slurm-cluster.sh stop    # stop the daemons this script started (by their PID files)
# State and logs live in $PROBES_SLURM_DIR (default /tmp/probes-slurm); the configuration is written
# to SLURM's default path, /etc/slurm/slurm.conf, where job steps (srun inside a job) look for it,
# unless a slurm.conf that this script did not write is there already (then it stops).
# No cgroups, no accounting daemon: proctrack/linuxproc, task/none, accounting_storage/none.
set -euo pipefail
DIR="${PROBES_SLURM_DIR:-/tmp/probes-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by probes .ci/slurm-cluster.sh"

start() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        echo "installing slurmctld slurmd slurm-client munge (Debian packages)"
        if [ "$(id -u)" -ne 0 ]; then echo "cannot install SLURM: not root" >&2; exit 1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >"${TMPDIR:-/tmp}/probes-slurm-apt.log" 2>&1 \
            || { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >>"${TMPDIR:-/tmp}/probes-slurm-apt.log" 2>&1; } \
            || { echo "apt-get install failed; see ${TMPDIR:-/tmp}/probes-slurm-apt.log" >&2; exit 1; }
    fi
    # A test cluster starts empty: daemons left by a run that was itself killed are stopped, and
    # their saved jobs are dropped (recovered, they would hold the node and stall the test).
    stop >/dev/null
    rm -rf "$DIR/state" "$DIR/spool"
    mkdir -p "$DIR/state" "$DIR/spool" /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- munged 2>/dev/null || munged --force
        for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
        cp /run/munge/munged.pid "$DIR/munged.pid"
    fi
    local host node
    host="$(hostname -s)"
    node="$(slurmd -C | head -1 | sed 's/ *$//')"
    if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        echo "$CONF exists and was not written by this script: not touching a real SLURM installation" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$CONF")"
    cat >"$CONF" <<CONF
$MARK
ClusterName=probes
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2000
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
$node State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    slurmctld -c -f "$CONF"
    slurmd -c -f "$CONF"
    for _ in $(seq 30); do
        if sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix|alloc"; then
            echo "SLURM is up ($CONF)"
            sinfo
            return 0
        fi
        sleep 1
    done
    echo "SLURM did not come up; logs: $DIR/slurmctld.log $DIR/slurmd.log" >&2
    tail -n 5 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
    exit 1
}

stop() {
    for daemon in slurmd slurmctld munged; do
        if [ -s "$DIR/$daemon.pid" ]; then
            pid="$(cat "$DIR/$daemon.pid")"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            rm -f "$DIR/$daemon.pid"
        fi
    done
    echo "stopped the SLURM daemons started from $DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
