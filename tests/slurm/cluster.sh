#!/usr/bin/env bash
# A throw-away Slurm cluster on this machine for the `slurm` tests: munged, slurmctld and two
# slurmd playing nodes n1 and n2, all as the current user (root), state under one directory.
#   tests/slurm/cluster.sh start DIR [PORT]   (re)starts it (PORT or the next free ones); prints
#                                             `export SLURM_CONF=...`
#   tests/slurm/cluster.sh stop DIR           stops the daemons by their pid files, removes DIR
# CI starts with no services, so the test fixture (tests/slurm/CMakeLists.txt) runs start before
# and stop after the slurm tests. Settings from ../shared/slurm-notes.md: no cgroups here
# (proctrack/linuxproc, task/none), fast requeue (cred_expire=10, sched_interval=2), fake nodes
# on one host (NodeHostname=localhost, a port each, TmpFS per node).
# Exit 77 (skipped) when the Slurm or munge daemons are not installed.
set -euo pipefail

cmd=${1:?usage: cluster.sh start|stop DIR [PORT]}
dir=${2:?usage: cluster.sh start|stop DIR [PORT]}
port=${3:-16817}  # slurmctld; the nodes take the next two
case "$(basename "$dir")" in
  ftune-slurm*) ;;
  *) echo "cluster.sh: DIR must be named ftune-slurm* (it is removed on stop): $dir"; exit 2 ;;
esac

stop_pid_file() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop() {
  [ -d "$dir" ] || return 0
  # Jobs first, so that no slurmstepd or rank outlives its daemons.
  if [ -f "$dir/slurm.conf" ] && [ -f "$dir/slurmctld.pid" ]; then
    SLURM_CONF="$dir/slurm.conf" timeout 10 scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
  fi
  for f in "$dir"/slurmd-*.pid "$dir/slurmctld.pid" "$dir/munged.pid"; do stop_pid_file "$f"; done
  rm -rf "$dir"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Three free ports from $port on (another checkout's cluster may hold the first ones).
pick_ports() {
  for _ in $(seq 40); do
    if ! listening "$port" && ! listening $((port + 1)) && ! listening $((port + 2)); then return 0; fi
    port=$((port + 3))
  done
  echo "cluster.sh: no three free ports found"; exit 1
}

need() { command -v "$1" >/dev/null 2>&1 || { echo "cluster.sh: $1 not found (scripts/setup.sh installs slurm-wlm and munge)"; exit 77; }; }

start() {
  need munged; need slurmctld; need slurmd; need sbatch
  stop
  # A daemon that fails to start must not leave the others running.
  trap 'echo "cluster.sh: start failed; stopping what started"; tail -n 20 "$dir"/log/*.log 2>/dev/null; stop' ERR
  pick_ports
  mkdir -p "$dir"/{ctld,spool/n1,spool/n2,tmp/n1,tmp/n2,log}
  chmod 0755 "$dir"  # munged refuses a socket directory others may write or that hides it
  dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 0600 "$dir/munge.key"
  munged --force --socket="$dir/munge.socket.2" --key-file="$dir/munge.key" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munged.seed"
  local cpus=2  # per fake node: declared (config_overrides), so 2 ranks fit on one of them
  cat >"$dir/slurm.conf" <<EOF
ClusterName=ftunetest
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket.2,cred_expire=10
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
TmpFS=$dir/tmp/%n
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=pmix
JobRequeue=1
SchedulerParameters=sched_interval=2,bf_interval=2
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=600
EnforcePartLimits=ALL
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=n[1-2] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[$((port + 1))-$((port + 2))] CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=30 State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -i
  slurmd -N n1
  slurmd -N n2
  # Both nodes idle, or the log says why not.
  for _ in $(seq 100); do
    if [ "$(sinfo -h -N -o '%t' 2>/dev/null | grep -c '^idle')" = 2 ]; then
      echo "export SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.2
  done
  echo "cluster.sh: the nodes did not come up:"; sinfo -N 2>&1 || true
  tail -n 20 "$dir"/log/*.log || true
  stop
  exit 1
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: cluster.sh start|stop DIR [PORT]"; exit 2 ;;
esac
