# shellcheck shell=bash
# tests/servers/lib.sh — helpers shared by the test-server scripts (sourced,
# not run): messages, free loopback ports, clocks, and finding, checking and
# stopping exactly the process a script started.

# shellcheck disable=SC2034  # used by the scripts that source this file
eb_servers_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# eb_say WHAT...: a progress line on stderr (stdout is reserved for what a
# caller evals).
eb_say() {
  printf '%s: %s\n' "${eb_script_name:-servers}" "$*" >&2
}

# eb_die WHAT...: the reason on stderr, then exit 1.
eb_die() {
  eb_say "error: $*"
  exit 1
}

# eb_now: seconds since the epoch with microseconds (bash 5's EPOCHREALTIME).
eb_now() {
  printf '%s\n' "${EPOCHREALTIME/,/.}"
}

# eb_elapsed START: seconds since START (an eb_now value), one decimal.
eb_elapsed() {
  awk -v a="$1" -v b="$(eb_now)" 'BEGIN { printf "%.1f\n", b - a }'
}

# eb_free_ports N: prints N distinct TCP ports that are free on 127.0.0.1,
# one a line. The kernel chooses them (bind to port 0) while all N sockets
# are open, so they differ; someone else may still take one before the
# server binds it, which is why the servers retry a start that failed to bind.
eb_free_ports() {
  local count=$1
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$count" <<'EOF' && return 0
import socket, sys
sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
for s in sockets:
    print(s.getsockname()[1])
EOF
  fi
  # Without python3: probe random ports in the ephemeral-free range 20000-32767;
  # a refused connection means nobody listens there.
  local -a chosen=()
  local port tries=0
  while ((${#chosen[@]} < count)); do
    ((++tries > 1000)) && return 1
    port=$((20000 + RANDOM % 12768))
    [[ " ${chosen[*]} " == *" $port "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      chosen+=("$port")
    fi
  done
  printf '%s\n' "${chosen[@]}"
}

# eb_port_free PORT: true if nothing listens on 127.0.0.1:PORT.
eb_port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# eb_pid_is PID MARK: true if PID is a live process (not a zombie) whose
# command line contains MARK (for example its run directory): a PID file
# left behind by a dead server may name someone else's process by now.
eb_pid_is() {
  local pid=$1 mark=$2 cmdline state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  state=$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
  [[ $state != Z && -n $state ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$mark"* ]]
}

# eb_child_alive PID: true while PID, a child this script just started, is
# alive (not a zombie), whatever it runs: right after the fork it is still
# this shell (closing descriptors, then exec), so its command line does not
# name the server yet and eb_pid_is would call it gone.
eb_child_alive() {
  local state
  state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)
  [[ -n $state && $state != Z ]]
}

# eb_stop_pid PID MARK GRACE_SECONDS: SIGTERM to PID if it is still the
# process we started (see eb_pid_is), wait up to GRACE_SECONDS for it to
# exit, then SIGKILL and wait again. Returns 0 once it is gone.
eb_stop_pid() {
  local pid=$1 mark=$2 grace=$3 deadline
  eb_pid_is "$pid" "$mark" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + grace))
  while eb_pid_is "$pid" "$mark"; do
    if ((SECONDS >= deadline)); then
      eb_say "pid $pid still running after ${grace}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while eb_pid_is "$pid" "$mark" && ((SECONDS < deadline)); do
        sleep 0.1
      done
      eb_pid_is "$pid" "$mark" && return 1
      return 0
    fi
    sleep 0.1
  done
  return 0
}

# eb_freeze PID SECONDS WHAT: SIGSTOPs PID (a server: it keeps its
# connections but answers nothing) for SECONDS, then SIGCONTs it; whatever
# ends the calling script (TERM, INT, HUP, an error) wakes it too, since
# other suites share the server. Sets traps and the globals frozen_pid and
# sleeper_pid (the EXIT trap runs after this function has returned).
eb_freeze() {
  frozen_pid=$1
  local seconds=$2 what=$3
  sleeper_pid=
  trap 'kill -CONT "$frozen_pid" 2>/dev/null || true
        [[ -z $sleeper_pid ]] || kill "$sleeper_pid" 2>/dev/null || true' EXIT
  trap 'exit 143' TERM INT HUP
  kill -STOP "$frozen_pid"
  eb_say "$what frozen (pid $frozen_pid) for ${seconds}s"
  # In the background, so that a TERM is served at once, not after the sleep.
  sleep "$seconds" &
  sleeper_pid=$!
  wait "$sleeper_pid"
  sleeper_pid=
  kill -CONT "$frozen_pid"
  eb_say "$what woken (pid $frozen_pid)"
}

# eb_running_pid PID_FILE MARK: prints the PID of PID_FILE if that process
# is alive and still ours (eb_pid_is); false otherwise.
eb_running_pid() {
  local pid
  [[ -f $1 ]] || return 1
  pid=$(<"$1")
  eb_pid_is "$pid" "$2" || return 1
  printf '%s\n' "$pid"
}

# eb_lock_run_dir DIR SECONDS: takes DIR's lock on descriptor 8 (held until
# the script exits), waiting up to SECONDS for another script to let go.
eb_lock_run_dir() {
  exec 8>"$1/lock"
  flock -w "$2" 8 || eb_die "$1/lock is held by another $eb_script_name for $2s (lsof $1/lock)"
}

# eb_stop_server PID_FILE MARK GRACE_SECONDS WHAT: stops the process of
# PID_FILE if it is still ours, waking it first (a SIGSTOPped process
# ignores SIGTERM); says what it did. The caller removes its files.
eb_stop_server() {
  local pid_file=$1 mark=$2 grace=$3 what=$4 pid
  if [[ -f $pid_file ]]; then
    pid=$(<"$pid_file")
    if eb_pid_is "$pid" "$mark"; then
      kill -CONT "$pid" 2>/dev/null || true
      eb_stop_pid "$pid" "$mark" "$grace" || eb_die "pid $pid did not exit after SIGKILL"
      eb_say "stopped the $what (pid $pid)"
    else
      eb_say "no $what running (stale pid file removed)"
    fi
  else
    eb_say "no $what running"
  fi
}
