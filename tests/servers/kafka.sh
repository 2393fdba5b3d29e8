#!/usr/bin/env bash
# tests/servers/kafka.sh — a single-node Apache Kafka broker (KRaft, combined
# broker+controller) on free 127.0.0.1 ports for the tests and benchmarks.
# The broker's jars come from Maven Central through mvn and are cached; the
# broker runs on the machine's Java with the test settings of DESIGN.md.
#
# usage: tests/servers/kafka.sh COMMAND
#   start            fetch the jars if needed, format a fresh storage
#                    directory, start the broker, wait until it answers
#                    metadata requests, print `export EB_KAFKA_...` lines:
#                        eval "$(tests/servers/kafka.sh start)"
#                    A start while it runs reuses the running broker
#                    (restarted if it does not answer metadata).
#   stop             stop the broker this run directory started (SIGTERM,
#                    then SIGKILL after a deadline) and delete its data
#   status           say whether it runs (exit 0) or not (exit 3)
#   env              print the export lines of the running broker
#   down [-9]        stop the broker but keep its data and ports (SIGTERM,
#                    or SIGKILL with -9): for broker-restart tests
#   up               start it again after `down`: same ports, same data
#   freeze SECONDS   SIGSTOP the broker for SECONDS, then SIGCONT (also when
#                    this script is interrupted or killed by SIGTERM): it
#                    keeps its connections but answers nothing. Holds the
#                    run directory's lock meanwhile, so a `start` elsewhere
#                    waits instead of restarting a broker that seems hung.
#   topic NAME PARTITIONS
#                    create a topic (replication factor 1) and wait until
#                    metadata shows every partition with a leader
#   offsets GROUP    print the group's committed offsets: "topic partition offset"
#   fetch            only fetch the jars (cache them)
#
# Environment:
#   EB_KAFKA_VERSION      Kafka version (default: 3.9.1, else 3.9.0)
#   EB_KAFKA_RUN_DIR      run directory (default: <repo>/build/servers/kafka)
#   EB_CACHE_DIR          jar cache root (default: ~/.cache/eventbus);
#                         the jars go to $EB_CACHE_DIR/kafka-<version>/libs
#   EB_KAFKA_HEAP_OPTS    default "-Xms256m -Xmx512m"
#   EB_KAFKA_JVM_OPTS     default "-XX:+UseSerialGC -XX:-UsePerfData" (one GC
#                         thread: light on a 2-core machine)
#   EB_KAFKA_START_TIMEOUT  seconds to wait for metadata (default 90)
set -euo pipefail
eb_script_name=kafka.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

run_dir=${EB_KAFKA_RUN_DIR:-$eb_servers_root/build/servers/kafka}
mkdir -p "$run_dir"
run_dir=$(cd "$run_dir" && pwd)
cache_root=${EB_CACHE_DIR:-${HOME:?set HOME or EB_CACHE_DIR}/.cache/eventbus}
heap_opts=${EB_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
jvm_opts=${EB_KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:-UsePerfData}
start_timeout=${EB_KAFKA_START_TIMEOUT:-90}
maven_dependency_plugin=3.6.1

pid_file=$run_dir/kafka.pid
env_file=$run_dir/env
data_dir=$run_dir/data
log_dir=$run_dir/logs

# ---------------------------------------------------------------- the jars

# write_pom DIR VERSION [GROUP:ARTIFACT:VERSION...]: a throwaway pom whose
# runtime dependencies are the broker (kafka_2.13), the command-line tools
# (kafka-tools: TopicCommand, ConsumerGroupCommand) and any extra artifacts.
write_pom() {
  local dir=$1 version=$2 extra
  shift 2
  {
    cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <!-- Written by tests/servers/kafka.sh: the jars of a Kafka $version broker. -->
  <modelVersion>4.0.0</modelVersion>
  <groupId>eventbus.tests</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>$version</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
EOF
    for extra in "$@"; do
      IFS=: read -r g a v <<<"$extra"
      echo "    <dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
    done
    cat <<EOF
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId>
    <artifactId>maven-dependency-plugin</artifactId>
    <version>$maven_dependency_plugin</version>
  </plugin></plugins></build>
</project>
EOF
  } >"$dir/pom.xml"
}

# maven_errors LOG: the lines of mvn's log that say what went wrong.
maven_errors() {
  grep -E '^\[ERROR\] [^ ]' "$1" | grep -vE 'Re-run Maven|full stack trace|For more information' |
    head -n 3 | cut -c1-400 >&2 || true
}

# copy_dependencies DIR: mvn copies the pom's runtime jars to DIR/libs.tmp.
copy_dependencies() {
  local dir=$1
  (cd "$dir" && mvn -B -ntp -U dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$dir/libs.tmp") >>"$dir/fetch.log" 2>&1
}

# fetch_version VERSION: makes $cache_root/kafka-VERSION/libs complete (a
# no-op when it already is) and sets `libs`. Returns 1, saying why, when
# Maven cannot resolve the version.
fetch_version() {
  local version=$1 dir=$cache_root/kafka-$1
  libs=$dir/libs
  [[ -f $dir/complete ]] && return 0
  command -v mvn >/dev/null || eb_die "mvn not found (Debian package maven: run scripts/install-deps.sh)"
  command -v java >/dev/null || eb_die "java not found (Debian package default-jre-headless)"
  mkdir -p "$dir"
  (
    # One fetch at a time per version: parallel starts wait for the first.
    flock 9
    [[ -f $dir/complete ]] && exit 0
    eb_say "fetching Kafka $version jars with mvn into $dir (log: $dir/fetch.log)"
    rm -rf "$dir/libs.tmp" "$dir/libs"
    : >"$dir/fetch.log"
    write_pom "$dir" "$version"
    if ! copy_dependencies "$dir"; then
      maven_errors "$dir/fetch.log"
      eb_say "mvn could not fetch org.apache.kafka:kafka_2.13:$version (see $dir/fetch.log)"
      exit 1
    fi
    # Kafka's poms name the logging API but not always the backend its
    # tarball ships: 3.x gets slf4j-reload4j through kafka_2.13; 4.x ships
    # log4j2 with log4j-slf4j-impl, which we add at the version of the
    # log4j-core the poms brought (4.1 and later), or at the one Kafka
    # 4.0's tarball ships (its poms bring no log4j-core).
    if ! compgen -G "$dir/libs.tmp/slf4j-reload4j-*.jar" >/dev/null &&
       ! compgen -G "$dir/libs.tmp/log4j-slf4j*-impl-*.jar" >/dev/null; then
      local core log4j_version=2.24.3
      core=$(compgen -G "$dir/libs.tmp/log4j-core-*.jar" | head -n 1 || true)
      if [[ -n $core ]]; then
        log4j_version=${core##*/log4j-core-}
        log4j_version=${log4j_version%.jar}
      fi
      write_pom "$dir" "$version" \
        "org.apache.logging.log4j:log4j-core:$log4j_version" \
        "org.apache.logging.log4j:log4j-slf4j-impl:$log4j_version"
      if ! copy_dependencies "$dir"; then
        maven_errors "$dir/fetch.log"
        eb_say "mvn could not fetch log4j $log4j_version (see $dir/fetch.log)"
        exit 1
      fi
    fi
    # What KRaft needs at run time, by jar name.
    local jar missing=()
    for jar in kafka_2.13 kafka-server kafka-server-common kafka-storage kafka-metadata \
               kafka-raft kafka-clients kafka-group-coordinator kafka-tools scala-library slf4j-api; do
      compgen -G "$dir/libs.tmp/$jar-[0-9]*.jar" >/dev/null || missing+=("$jar")
    done
    if ((${#missing[@]} > 0)); then
      eb_say "the fetched Kafka $version jars lack: ${missing[*]}"
      exit 1
    fi
    mv "$dir/libs.tmp" "$dir/libs"
    touch "$dir/complete"
    eb_say "cached $(find "$dir/libs" -name '*.jar' | wc -l) jars for Kafka $version"
  ) 9>"$dir/lock"
}

# fetch_jars: the requested version, or the default 3.9.x candidates in
# order; sets `version` and `libs`.
fetch_jars() {
  local candidate
  local -a candidates
  if [[ -n ${EB_KAFKA_VERSION:-} ]]; then
    candidates=("$EB_KAFKA_VERSION")
  else
    candidates=(3.9.1 3.9.0)
  fi
  for candidate in "${candidates[@]}"; do
    if fetch_version "$candidate"; then
      version=$candidate
      return 0
    fi
  done
  eb_die "no Kafka jars: tried ${candidates[*]} through Maven Central"
}

# ---------------------------------------------------------------- running

# tool CLASS ARGS...: runs one of Kafka's command-line tools (storage
# format, topics, groups), short-lived: small heap, C1 only, and warnings
# to stderr.
tool() {
  local log4j=$run_dir/tools-log4j.properties
  [[ $version == 3.* ]] || log4j=$run_dir/tools-log4j2.properties
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData \
       -Djava.awt.headless=true \
       -Dlog4j.configuration="file:$log4j" -Dlog4j2.configurationFile="$log4j" \
       -cp "$libs/*" "$@"
}

write_configs() {
  local port=$1 cport=$2
  cat >"$run_dir/server.properties" <<EOF
# Written by tests/servers/kafka.sh: a single-node KRaft test broker.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data_dir

# Test settings (DESIGN.md): one node, so internal topics have one replica;
# groups form at once and accept short session timeouts; topics are created
# explicitly.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# After "down -9", the restarted broker cannot register until the killed
# one's session expires (DUPLICATE_BROKER_REGISTRATION): 3 s, not 9.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
EOF
  if [[ $version != 3.* ]]; then
    cat >>"$run_dir/server.properties" <<EOF
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
  fi

  # reload4j (Kafka 3.x) and log4j2 (4.x) configurations: the broker logs to
  # logs/server.log (controller and state changes only from WARN up), never
  # to the console.
  cat >"$run_dir/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$log_dir/server.log
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.controller=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.controller=WARN
EOF
  cat >"$run_dir/log4j2.properties" <<EOF
appender.file.type=File
appender.file.name=file
appender.file.fileName=$log_dir/server.log
appender.file.append=true
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
logger.controller.name=org.apache.kafka.controller
logger.controller.level=WARN
logger.statechange.name=state.change.logger
logger.statechange.level=WARN
EOF
  cat >"$run_dir/tools-log4j.properties" <<EOF
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
  cat >"$run_dir/tools-log4j2.properties" <<EOF
appender.stderr.type=Console
appender.stderr.name=stderr
appender.stderr.target=SYSTEM_ERR
appender.stderr.layout.type=PatternLayout
appender.stderr.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.stderr.ref=stderr
EOF
}

# A cluster id is 16 random bytes in URL-safe base64 without padding; like
# Kafka's Uuid.randomUuid, never one starting with '-' (it reads as an option).
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ $id != -* ]] && break
  done
  printf '%s\n' "$id"
}

running_pid() {
  eb_running_pid "$pid_file" "$run_dir/server.properties"
}

print_env() {
  cat "$env_file"
}

# wait_ready BOOTSTRAP PID: until kcat gets metadata naming broker 1, or the
# process died, or the deadline passed.
wait_ready() {
  local bootstrap=$1 pid=$2 deadline=$((SECONDS + start_timeout))
  command -v kcat >/dev/null || eb_die "kcat not found (Debian package kcat: run scripts/install-deps.sh)"
  while ((SECONDS < deadline)); do
    if ! eb_child_alive "$pid"; then
      eb_say "the broker exited during start-up; the end of its logs:"
      tail -n 20 "$log_dir/stdout.log" "$log_dir/server.log" 2>/dev/null | sed 's/^/  /' >&2
      return 2
    fi
    # Nothing listens yet: a cheap probe instead of a kcat that waits.
    if eb_port_free "${bootstrap##*:}"; then
      sleep 0.1
      continue
    fi
    if timeout 10 kcat -b "$bootstrap" -L -m 2 2>/dev/null |
       grep -q "broker 1 at 127.0.0.1"; then
      return 0
    fi
    sleep 0.2
  done
  eb_say "the broker did not answer metadata requests at $bootstrap within ${start_timeout}s"
  tail -n 20 "$log_dir/server.log" 2>/dev/null | sed 's/^/  /' >&2
  return 1
}

start_broker() {
  local port=$1 cport=$2 pid rc
  mkdir -p "$log_dir"
  : >"$log_dir/stdout.log"
  # setsid: the broker gets its own session, so a terminal's ^C or a test
  # runner killing its process group reaches only what `stop` decides.
  local log4j=$run_dir/log4j.properties
  [[ $version == 3.* ]] || log4j=$run_dir/log4j2.properties
  (
    cd "$run_dir"
    # The broker keeps no descriptor of ours beyond 0-2 (which go to its
    # log): not the run directory's lock, nor a test runner's pipes that
    # would make it wait for the broker to exit. Bash's own 255 is
    # close-on-exec.
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if ((fd > 2 && fd != 255)); then
        eval "exec $fd>&-"
      fi
    done
    # shellcheck disable=SC2086
    exec setsid java $heap_opts $jvm_opts -Djava.awt.headless=true \
      -Dlog4j.configuration="file:$log4j" -Dlog4j2.configurationFile="$log4j" \
      -Dkafka.logs.dir="$log_dir" -cp "$libs/*" \
      kafka.Kafka "$run_dir/server.properties"
  ) </dev/null >>"$log_dir/stdout.log" 2>&1 &
  pid=$!
  echo "$pid" >"$pid_file"
  # Interrupted while waiting: the broker is not left behind.
  # shellcheck disable=SC2064  # $pid is meant to expand now
  trap "eb_stop_pid $pid '$run_dir/server.properties' 20; rm -f '$pid_file'; exit 130" INT TERM
  rc=0
  wait_ready "127.0.0.1:$port" "$pid" || rc=$?
  trap - INT TERM
  if ((rc != 0)); then
    eb_stop_pid "$pid" "$run_dir/server.properties" 20 || true
    rm -f "$pid_file"
    # 3: it could not bind its ports (someone took them after we chose).
    if grep -qE 'BindException|Address already in use' "$log_dir/server.log" "$log_dir/stdout.log" 2>/dev/null; then
      return 3
    fi
    return 1
  fi
}

write_env() {
  local port=$1 cport=$2 seconds=$3
  cat >"$env_file" <<EOF
export EB_KAFKA_BOOTSTRAP=127.0.0.1:$port
export EB_KAFKA_CONTROLLER=127.0.0.1:$cport
export EB_KAFKA_VERSION_RUNNING=$version
export EB_KAFKA_RUN_DIR=$run_dir
export EB_KAFKA_CTL=$self
export EB_KAFKA_START_SECONDS=$seconds
EOF
}

# Reads the saved state of this run directory into port, cport, version, libs.
load_state() {
  [[ -f $run_dir/state ]] || return 1
  # shellcheck disable=SC1091
  source "$run_dir/state"
  [[ -n ${port:-} && -n ${cport:-} && -n ${version:-} && -d ${libs:-} ]]
}

# Commands that change the run directory take its lock (a slow first start
# holds it while fetching and starting, so wait long enough for that).
lock_run_dir() {
  eb_lock_run_dir "$run_dir" 300
}

cmd_start() {
  local pid t0 format_s rc cluster_id
  lock_run_dir
  command -v kcat >/dev/null || eb_die "kcat not found (Debian package kcat: run scripts/install-deps.sh)"
  if pid=$(running_pid) && [[ -f $env_file ]]; then
    # A broker left by an interrupted run may be on its way down: reuse it
    # only if it answers metadata requests within 10 s.
    if timeout 15 kcat -b "127.0.0.1:$(sed -n 's/^export EB_KAFKA_BOOTSTRAP=127.0.0.1://p' "$env_file")" \
         -L -m 10 2>/dev/null | grep -q "broker 1 at 127.0.0.1"; then
      eb_say "reusing the broker already running (pid $pid)"
      if [[ -n ${EB_KAFKA_VERSION:-} ]] && ! grep -qx "export EB_KAFKA_VERSION_RUNNING=$EB_KAFKA_VERSION" "$env_file"; then
        eb_say "warning: it is not Kafka $EB_KAFKA_VERSION (stop it first, or use another EB_KAFKA_RUN_DIR)"
      fi
      print_env
      return 0
    fi
    eb_say "the broker already running (pid $pid) does not answer metadata requests: restarting it"
    stop_locked
  elif pid=$(running_pid); then
    # A start that died before writing its env file left this one running.
    eb_say "a broker from an unfinished start runs (pid $pid): stopping it"
    stop_locked
  fi
  t0=$(eb_now)
  fetch_jars
  for _ in 1 2 3; do
    rm -rf "$data_dir" "$env_file" "$run_dir/state"
    mapfile -t ports < <(eb_free_ports 2)
    ((${#ports[@]} == 2)) || eb_die "could not find two free ports on 127.0.0.1"
    port=${ports[0]} cport=${ports[1]}
    write_configs "$port" "$cport"
    cluster_id=$(new_cluster_id)
    local tf
    tf=$(eb_now)
    if ! tool kafka.tools.StorageTool format -t "$cluster_id" \
         -c "$run_dir/server.properties" >"$run_dir/format.log" 2>&1; then
      sed 's/^/  /' "$run_dir/format.log" >&2
      eb_die "formatting the KRaft storage in $data_dir failed"
    fi
    format_s=$(eb_elapsed "$tf")
    printf 'port=%s\ncport=%s\nversion=%s\nlibs=%q\n' "$port" "$cport" "$version" "$libs" >"$run_dir/state"
    rc=0
    start_broker "$port" "$cport" || rc=$?
    ((rc == 0)) && break
    ((rc == 3)) || eb_die "Kafka $version did not start (logs in $log_dir)"
    eb_say "port taken before the broker bound it; trying other ports"
  done
  ((rc == 0)) || eb_die "Kafka $version could not bind free ports three times"
  local total
  total=$(eb_elapsed "$t0")
  write_env "$port" "$cport" "$total"
  eb_say "Kafka $version ready at 127.0.0.1:$port (pid $(<"$pid_file")) in ${total}s (storage format ${format_s}s)"
  print_env
}

cmd_stop() {
  lock_run_dir
  stop_locked
}

# The body of stop, for callers that hold the run directory's lock.
stop_locked() {
  eb_stop_server "$pid_file" "$run_dir/server.properties" 30 broker
  rm -rf "$pid_file" "$env_file" "$data_dir" "$run_dir/state"
}

cmd_down() {
  local pid signal_grace=30
  [[ ${1:-} == -9 ]] && signal_grace=0
  lock_run_dir
  pid=$(running_pid) || eb_die "no broker running in $run_dir"
  if ((signal_grace == 0)); then
    kill -KILL "$pid"
    while eb_pid_is "$pid" "$run_dir/server.properties"; do sleep 0.05; done
  else
    eb_stop_pid "$pid" "$run_dir/server.properties" "$signal_grace" ||
      eb_die "pid $pid did not exit"
  fi
  rm -f "$pid_file"
  if load_state; then
    local deadline=$((SECONDS + 10))
    until eb_port_free "$port" && eb_port_free "$cport"; do
      ((SECONDS < deadline)) || break
      sleep 0.05
    done
  fi
  eb_say "broker down (pid $pid); data and ports kept for \`up\`"
}

cmd_up() {
  local t0 total pid rc
  lock_run_dir
  if pid=$(running_pid); then
    eb_say "already running (pid $pid)"
    print_env
    return 0
  fi
  load_state || eb_die "nothing to bring up in $run_dir (use start)"
  [[ -d $data_dir ]] || eb_die "no data in $data_dir (use start)"
  # A killed broker's sockets can outlive its PID for a moment.
  local deadline=$((SECONDS + 10))
  until eb_port_free "$port" && eb_port_free "$cport"; do
    ((SECONDS < deadline)) ||
      eb_die "port $port or $cport is taken now; cannot bring the same broker up"
    sleep 0.1
  done
  t0=$(eb_now)
  rc=0
  start_broker "$port" "$cport" || rc=$?
  ((rc == 0)) || eb_die "Kafka $version did not come back up (logs in $log_dir)"
  total=$(eb_elapsed "$t0")
  write_env "$port" "$cport" "$total"
  eb_say "Kafka $version back up at 127.0.0.1:$port (pid $(<"$pid_file")) in ${total}s"
  print_env
}

cmd_freeze() {
  local seconds=${1:-}
  [[ $seconds =~ ^[0-9]+(\.[0-9]+)?$ ]] || eb_die "usage: kafka.sh freeze SECONDS"
  lock_run_dir
  local pid
  pid=$(running_pid) || eb_die "no broker running in $run_dir"
  eb_freeze "$pid" "$seconds" broker
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    echo "kafka: running (pid $pid), $(grep -o 'EB_KAFKA_BOOTSTRAP=.*' "$env_file" 2>/dev/null)"
    return 0
  fi
  echo "kafka: not running (run dir $run_dir)"
  return 3
}

cmd_env() {
  if ! running_pid >/dev/null || [[ ! -f $env_file ]]; then
    eb_die "no broker running in $run_dir"
  fi
  print_env
}

# Needs the running broker's bootstrap and jars.
require_running() {
  running_pid >/dev/null || eb_die "no broker running in $run_dir (start it first)"
  load_state || eb_die "the state of $run_dir is missing"
  bootstrap=127.0.0.1:$port
}

cmd_topic() {
  local name=${1:-} partitions=${2:-} deadline meta
  [[ -n $name && $partitions =~ ^[1-9][0-9]*$ ]] || eb_die "usage: kafka.sh topic NAME PARTITIONS"
  require_running
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create \
       --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1 >&2 ||
    eb_die "creating topic $name failed"
  # Wait until metadata shows every partition with a leader.
  deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    meta=$(timeout 10 kcat -b "$bootstrap" -L -t "$name" -m 5 2>/dev/null || true)
    if [[ $meta == *"topic \"$name\" with $partitions partitions"* ]] &&
       ! grep -q 'leader -1' <<<"$meta"; then
      eb_say "topic $name ready with $partitions partitions"
      return 0
    fi
    sleep 0.1
  done
  eb_die "topic $name did not appear in metadata with $partitions partitions within 30s"
}

cmd_offsets() {
  local group=${1:-}
  [[ -n $group ]] || eb_die "usage: kafka.sh offsets GROUP"
  require_running
  # ConsumerGroupCommand's columns: GROUP TOPIC PARTITION CURRENT-OFFSET ...
  tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
       --bootstrap-server "$bootstrap" --describe --group "$group" 2>/dev/null |
    awk -v g="$group" '$1 == g && $3 ~ /^[0-9]+$/ { print $2, $3, $4 }'
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  down) cmd_down "${2:-}" ;;
  up) cmd_up ;;
  freeze) cmd_freeze "${2:-}" ;;
  topic) cmd_topic "${2:-}" "${3:-}" ;;
  offsets) cmd_offsets "${2:-}" ;;
  fetch) fetch_jars; eb_say "Kafka $version jars in $libs" ;;
  *)
    sed -n '/^# usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2 ;;
esac
