#!/usr/bin/env bash
# tests/servers/redis.sh — a single Redis server (Debian's redis-server 7.0)
# on a free 127.0.0.1 port for the Redis Streams transport's tests. It runs
# with its own configuration file and data in its run directory: AOF with
# fsync on every write (durability tests), no RDB snapshots, no eviction, and
# an ACL user for AUTH tests (the default user stays passwordless).
#
# usage: tests/servers/redis.sh COMMAND
#   start            start a server with empty data, wait until it answers
#                    PING, print `export EB_REDIS_...` lines:
#                        eval "$(tests/servers/redis.sh start)"
#                    A start while it runs reuses the running server
#                    (restarted if it does not answer PING).
#   stop             stop the server this run directory started (SIGTERM,
#                    then SIGKILL after a deadline) and delete its data
#   status           say whether it runs (exit 0) or not (exit 3)
#   env              print the export lines of the running server
#   down [-9]        stop the server but keep its data and port (SIGTERM,
#                    or SIGKILL with -9): for server-restart tests
#   up [--empty]     start it again after `down`: same port, same data (the
#                    AOF is replayed), or with --empty none of it (a server
#                    that lost everything); waits until it answers PING
#   freeze SECONDS   SIGSTOP the server for SECONDS, then SIGCONT (also when
#                    this script is interrupted or killed by SIGTERM): it
#                    keeps its connections but answers nothing. Holds the
#                    run directory's lock meanwhile.
#   cli ARGS...      redis-cli against the running server (as the default
#                    user), e.g. `redis.sh cli XRANGE s - +`
#
# start prints EB_REDIS_URL (redis://127.0.0.1:PORT), EB_REDIS_PORT,
# EB_REDIS_RUN_DIR, EB_REDIS_CTL (this script), EB_REDIS_TEST_USER (eb-test)
# and EB_REDIS_TEST_PASSWORD.
#
# Environment:
#   EB_REDIS_RUN_DIR        run directory (default: <repo>/build/servers/redis);
#                           one server per run directory
#   EB_REDIS_PERSISTENCE    aof (default: appendonly yes, appendfsync always)
#                           or none (nothing written to disk)
#   EB_REDIS_TEST_PASSWORD  the password of ACL user eb-test (default
#                           eb-test-secret; letters, digits and ._+=@%:,/-)
#   EB_REDIS_START_TIMEOUT  seconds to wait for PONG (default 20)
set -euo pipefail
eb_script_name=redis.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

run_dir=${EB_REDIS_RUN_DIR:-$eb_servers_root/build/servers/redis}
mkdir -p "$run_dir"
run_dir=$(cd "$run_dir" && pwd)
start_timeout=${EB_REDIS_START_TIMEOUT:-20}
redis_server=/usr/bin/redis-server
test_user=eb-test

pid_file=$run_dir/redis.pid
env_file=$run_dir/env
conf_file=$run_dir/redis.conf
data_dir=$run_dir/data
log_file=$run_dir/redis.log

require_tools() {
  [[ -x $redis_server ]] || eb_die "$redis_server not found (Debian package redis-server: run scripts/install-deps.sh)"
  command -v redis-cli >/dev/null || eb_die "redis-cli not found (Debian package redis-tools: run scripts/install-deps.sh)"
}

# write_config PORT PERSISTENCE PASSWORD
write_config() {
  local port=$1 persistence=$2 password=$3
  cat >"$conf_file" <<EOF
# Written by tests/servers/redis.sh: a test server on 127.0.0.1 only.
bind 127.0.0.1
port $port
protected-mode no
daemonize no
# The command line keeps naming this file: \`stop\` checks it before signalling.
set-proc-title no
dir $data_dir
logfile $log_file
loglevel notice
always-show-logo no
save ""
maxmemory-policy noeviction
# An ACL user for AUTH tests; the default user stays passwordless.
user $test_user on >$password ~* &* +@all
EOF
  case $persistence in
    aof) printf '%s\n' 'appendonly yes' 'appendfsync always' >>"$conf_file" ;;
    none) printf '%s\n' 'appendonly no' >>"$conf_file" ;;
  esac
}

running_pid() {
  eb_running_pid "$pid_file" "$conf_file"
}

print_env() {
  cat "$env_file"
}

# pong PORT: true if the server answers PING within 2 s.
pong() {
  [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
}

# wait_ready PORT PID: until the server answers PING (not LOADING while it
# replays its AOF), or the process died, or the deadline passed.
wait_ready() {
  local port=$1 pid=$2 deadline=$((SECONDS + start_timeout))
  while ((SECONDS < deadline)); do
    if ! eb_child_alive "$pid"; then
      eb_say "redis-server exited during start-up; the end of its logs:"
      tail -n 20 "$run_dir/stdout.log" "$log_file" 2>/dev/null | sed 's/^/  /' >&2
      return 2
    fi
    if ! eb_port_free "$port" && pong "$port"; then
      return 0
    fi
    sleep 0.05
  done
  eb_say "redis-server did not answer PING on 127.0.0.1:$port within ${start_timeout}s"
  tail -n 20 "$log_file" 2>/dev/null | sed 's/^/  /' >&2
  return 1
}

# start_server PORT: runs redis-server on the run directory's configuration
# and waits for PONG. Returns 3 if it could not bind the port, 4 if it
# exited without a word.
start_server() {
  local port=$1 pid rc
  mkdir -p "$data_dir"
  : >"$run_dir/stdout.log"
  # The log is kept across `down`/`up`; only this start's lines count below.
  local log_start=0
  [[ -f $log_file ]] && log_start=$(stat -c %s "$log_file")
  # setsid: its own session, so a terminal's ^C or a test runner killing its
  # process group reaches only what `stop` decides.
  (
    cd "$run_dir"
    # No descriptor of ours beyond 0-2 (which go to its log): not the run
    # directory's lock, nor a test runner's pipes. Bash's own 255 is
    # close-on-exec.
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if ((fd > 2 && fd != 255)); then
        eval "exec $fd>&-"
      fi
    done
    exec setsid "$redis_server" "$conf_file"
  ) </dev/null >>"$run_dir/stdout.log" 2>&1 &
  pid=$!
  echo "$pid" >"$pid_file"
  # Interrupted while waiting: the server is not left behind.
  # shellcheck disable=SC2064  # $pid is meant to expand now
  trap "eb_stop_pid $pid '$conf_file' 10; rm -f '$pid_file'; exit 130" INT TERM
  rc=0
  wait_ready "$port" "$pid" || rc=$?
  trap - INT TERM
  if ((rc != 0)); then
    eb_stop_pid "$pid" "$conf_file" 10 || true
    rm -f "$pid_file"
    local said
    said=$({ tail -c +$((log_start + 1)) "$log_file"; cat "$run_dir/stdout.log"; } 2>/dev/null)
    if grep -qE 'Address already in use|Could not create server TCP listening socket' <<<"$said"; then
      return 3
    fi
    if ((rc == 2)) && [[ -z $said ]]; then
      # It exited before writing a line: say how (it is our child), and
      # let the caller try again rather than fail the run on a mystery.
      local status=0
      wait "$pid" 2>/dev/null || status=$?
      if ((status > 128)); then
        eb_say "redis-server died of signal $((status - 128)) before writing a line"
      else
        eb_say "redis-server exited with status $status before writing a line"
      fi
      return 4
    fi
    return 1
  fi
}

write_env() {
  local port=$1 password=$2
  cat >"$env_file" <<EOF
export EB_REDIS_URL=redis://127.0.0.1:$port
export EB_REDIS_PORT=$port
export EB_REDIS_RUN_DIR=$run_dir
export EB_REDIS_CTL=$self
export EB_REDIS_TEST_USER=$test_user
export EB_REDIS_TEST_PASSWORD=$password
EOF
}

# Reads the saved state of this run directory into port, persistence, password.
load_state() {
  [[ -f $run_dir/state && -f $conf_file ]] || return 1
  # shellcheck disable=SC1091
  source "$run_dir/state"
  [[ -n ${port:-} && -n ${persistence:-} && -n ${password:-} ]]
}

# Commands that change the run directory take its lock.
lock_run_dir() {
  eb_lock_run_dir "$run_dir" 60
}

cmd_start() {
  local pid t0 rc total
  local persistence=${EB_REDIS_PERSISTENCE:-aof}
  local password=${EB_REDIS_TEST_PASSWORD:-eb-test-secret}
  [[ $persistence == aof || $persistence == none ]] ||
    eb_die "EB_REDIS_PERSISTENCE must be aof or none, not '$persistence'"
  [[ $password =~ ^[A-Za-z0-9._+=@%:,/-]+$ ]] ||
    eb_die "EB_REDIS_TEST_PASSWORD: use letters, digits and ._+=@%:,/- only"
  require_tools
  lock_run_dir
  if pid=$(running_pid) && [[ -f $env_file ]]; then
    if pong "$(sed -n 's/^export EB_REDIS_PORT=//p' "$env_file")"; then
      eb_say "reusing the server already running (pid $pid)"
      if ! grep -qx "appendonly $([[ $persistence == aof ]] && echo yes || echo no)" "$conf_file" ||
         ! grep -qx "export EB_REDIS_TEST_PASSWORD=$password" "$env_file"; then
        eb_say "warning: it runs with other settings (stop it first, or use another EB_REDIS_RUN_DIR)"
      fi
      print_env
      return 0
    fi
    eb_say "the server already running (pid $pid) does not answer PING: restarting it"
    stop_locked
  elif pid=$(running_pid); then
    # A start that died before writing its env file left this one running.
    eb_say "a server from an unfinished start runs (pid $pid): stopping it"
    stop_locked
  fi
  t0=$(eb_now)
  : >"$log_file"
  for _ in 1 2 3; do
    rm -rf "$data_dir" "$env_file" "$run_dir/state"
    port=$(eb_free_ports 1) || eb_die "could not find a free port on 127.0.0.1"
    [[ $port =~ ^[0-9]+$ ]] || eb_die "could not find a free port on 127.0.0.1"
    write_config "$port" "$persistence" "$password"
    printf 'port=%s\npersistence=%s\npassword=%s\n' "$port" "$persistence" "$password" >"$run_dir/state"
    rc=0
    start_server "$port" || rc=$?
    ((rc == 0)) && break
    ((rc == 3 || rc == 4)) || eb_die "redis-server did not start (log: $log_file)"
    if ((rc == 3)); then
      eb_say "port taken before the server bound it; trying another port"
    else
      eb_say "trying again on another port"
    fi
  done
  ((rc == 0)) || eb_die "redis-server did not start three times (log: $log_file)"
  write_env "$port" "$password"
  total=$(eb_elapsed "$t0")
  eb_say "Redis $("$redis_server" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') ready at 127.0.0.1:$port (pid $(<"$pid_file"), persistence $persistence) in ${total}s"
  print_env
}

cmd_stop() {
  lock_run_dir
  stop_locked
}

# The body of stop, for callers that hold the run directory's lock.
stop_locked() {
  eb_stop_server "$pid_file" "$conf_file" 10 server
  rm -rf "$pid_file" "$env_file" "$data_dir" "$run_dir/state"
}

cmd_down() {
  local pid
  lock_run_dir
  pid=$(running_pid) || eb_die "no server running in $run_dir"
  if [[ ${1:-} == -9 ]]; then
    kill -KILL "$pid"
    while eb_pid_is "$pid" "$conf_file"; do sleep 0.05; done
  else
    kill -CONT "$pid" 2>/dev/null || true
    eb_stop_pid "$pid" "$conf_file" 10 || eb_die "pid $pid did not exit"
  fi
  rm -f "$pid_file"
  if load_state; then
    local deadline=$((SECONDS + 10))
    until eb_port_free "$port" || ((SECONDS >= deadline)); do
      sleep 0.05
    done
  fi
  eb_say "server down (pid $pid); data and port kept for \`up\`"
}

cmd_up() {
  local t0 total pid rc
  require_tools
  lock_run_dir
  if pid=$(running_pid); then
    eb_say "already running (pid $pid)"
    print_env
    return 0
  fi
  load_state || eb_die "nothing to bring up in $run_dir (use start)"
  [[ -d $data_dir ]] || eb_die "no data in $data_dir (use start)"
  if [[ ${1:-} == --empty ]]; then
    find "$data_dir" -mindepth 1 -delete
  elif [[ -n ${1:-} ]]; then
    eb_die "up: unknown option '$1' (--empty or nothing)"
  fi
  # A killed server's socket can outlive its PID for a moment.
  local deadline=$((SECONDS + 10))
  until eb_port_free "$port"; do
    ((SECONDS < deadline)) || eb_die "port $port is taken now; cannot bring the same server up"
    sleep 0.05
  done
  t0=$(eb_now)
  rc=0
  start_server "$port" || rc=$?
  if ((rc == 4)); then
    eb_say "trying again"
    rc=0
    start_server "$port" || rc=$?
  fi
  ((rc == 0)) || eb_die "redis-server did not come back up (log: $log_file)"
  write_env "$port" "$password"
  total=$(eb_elapsed "$t0")
  eb_say "Redis back up at 127.0.0.1:$port (pid $(<"$pid_file")) in ${total}s"
  print_env
}

cmd_freeze() {
  local seconds=${1:-}
  [[ $seconds =~ ^[0-9]+(\.[0-9]+)?$ ]] || eb_die "usage: redis.sh freeze SECONDS"
  lock_run_dir
  local pid
  pid=$(running_pid) || eb_die "no server running in $run_dir"
  eb_freeze "$pid" "$seconds" server
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    echo "redis: running (pid $pid), $(grep -o 'EB_REDIS_URL=.*' "$env_file" 2>/dev/null)"
    return 0
  fi
  echo "redis: not running (run dir $run_dir)"
  return 3
}

cmd_env() {
  if ! running_pid >/dev/null || [[ ! -f $env_file ]]; then
    eb_die "no server running in $run_dir"
  fi
  print_env
}

cmd_cli() {
  running_pid >/dev/null || eb_die "no server running in $run_dir (start it first)"
  load_state || eb_die "the state of $run_dir is missing"
  exec redis-cli -h 127.0.0.1 -p "$port" "$@"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  down) cmd_down "${2:-}" ;;
  up) cmd_up "${2:-}" ;;
  freeze) cmd_freeze "${2:-}" ;;
  cli) shift; cmd_cli "$@" ;;
  *)
    sed -n '/^# usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2 ;;
esac
