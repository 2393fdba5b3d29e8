#!/usr/bin/env bash
# test.sh — the README's test command (and CI's): installs what is missing,
# then builds and runs every test in three builds under build/:
#   asan   address+undefined: criterion suites, lifecycle, ASan canaries
#          (every label except tsan, valgrind, bench and install), and the server
#          suites (labels kafka and redis) against a Kafka broker
#          (tests/servers/kafka.sh) and a redis-server
#          (tests/servers/redis.sh) started around its ctest
#          (EB_KAFKA_BOOTSTRAP, EB_REDIS_URL). If EB_KAFKA_BOOTSTRAP is
#          already set, the tests use that cluster and no broker is started.
#   tsan   thread, without criterion (it cannot run under TSan): label tsan,
#          with a redis-server for the redis conformance cases
#   plain  no sanitizer: labels valgrind, bench (smoke size) and install
#          (cmake --install into a moved prefix, used from there), with a
#          broker and a redis-server too for valgrind's few Kafka and Redis
#          cycles and the server benches
# Every phase runs even when an earlier one failed, so one run shows every
# failure; the exit status is non-zero if any phase failed. The last line
# is "N passed, N failed", summed over the phases.
#
# usage: scripts/test.sh [asan|tsan|plain]...   (default: all three)
# EB_TEST_JOBS sets ctest's parallelism (default 2).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

jobs=${EB_TEST_JOBS:-2}
phases=("$@")
if ((${#phases[@]} == 0)); then
  phases=(asan tsan plain)
fi

total_passed=0
total_failed=0
summaries=()
run_start=$SECONDS

# The servers this script started, stopped after their phase and on any
# exit (failure, ^C, SIGTERM), never left running.
kafka_started=0
redis_started=0
external_kafka=${EB_KAFKA_BOOTSTRAP:-}

stop_servers() {
  if ((kafka_started)); then
    kafka_started=0
    bash tests/servers/kafka.sh stop
  fi
  if ((redis_started)); then
    redis_started=0
    bash tests/servers/redis.sh stop
    unset EB_REDIS_URL EB_REDIS_PORT EB_REDIS_RUN_DIR EB_REDIS_CTL \
          EB_REDIS_TEST_USER EB_REDIS_TEST_PASSWORD
  fi
  # The next phases run without servers (unless the caller gave a cluster).
  if [[ -z $external_kafka ]]; then
    unset EB_KAFKA_BOOTSTRAP EB_KAFKA_CONTROLLER EB_KAFKA_VERSION_RUNNING \
          EB_KAFKA_RUN_DIR EB_KAFKA_CTL EB_KAFKA_START_SECONDS
  fi
}
trap stop_servers EXIT
trap 'stop_servers; exit 130' INT
trap 'stop_servers; exit 143' TERM

# start_redis NAME: starts redis-server for the phase and exports its URL;
# false, having said why, if it cannot start.
start_redis() {
  local name=$1 env
  echo "=== $name: start redis-server (tests/servers/redis.sh)"
  if ! env=$(bash tests/servers/redis.sh start); then
    echo "=== $name: redis-server did not start: the redis tests cannot run (see above)"
    return 1
  fi
  eval "$env"
  redis_started=1
  echo "=== $name: redis-server at $EB_REDIS_URL"
}

# start_kafka NAME: starts the Kafka broker for the phase (unless the
# caller gave a cluster) and exports its address; false, having said why,
# if it cannot start.
start_kafka() {
  local name=$1 env
  if [[ -n $external_kafka ]]; then
    echo "=== $name: Kafka tests use the cluster at EB_KAFKA_BOOTSTRAP=$external_kafka"
    return 0
  fi
  echo "=== $name: start the Kafka broker (tests/servers/kafka.sh)"
  if ! env=$(bash tests/servers/kafka.sh start); then
    echo "=== $name: the Kafka broker did not start: the kafka tests cannot run (see above)"
    return 1
  fi
  eval "$env"
  kafka_started=1
  echo "=== $name: Kafka $EB_KAFKA_VERSION_RUNNING at $EB_KAFKA_BOOTSTRAP, ready in ${EB_KAFKA_START_SECONDS}s"
}

# start_servers NAME SERVERS: starts what a phase needs (a comma list of
# "kafka" and "redis", or "none"); sets the caller's `down` to the labels
# whose server did not start (their tests cannot run), space-separated.
start_servers() {
  local name=$1 servers=$2 server
  down=""
  [[ $servers == none ]] && return 0
  for server in ${servers//,/ }; do
    case $server in
      kafka) start_kafka "$name" || down+="${down:+ }kafka" ;;
      redis) start_redis "$name" || down+="${down:+ }redis" ;;
    esac
  done
}

if ! bash scripts/install-deps.sh; then
  echo "test.sh: installing the dependencies failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# run_phase NAME SERVERS CMAKE_ARGS... -- CTEST_ARGS...
# Configures, builds and tests build/NAME, with the servers SERVERS (a comma
# list of "kafka" and "redis", or "none") running around its ctest; adds its
# counts to the totals.
run_phase() {
  local name=$1 servers=$2
  shift 2
  local -a cmake_args=() ctest_args=()
  while (($# > 0)) && [[ $1 != -- ]]; do
    cmake_args+=("$1")
    shift
  done
  shift
  ctest_args=("$@")

  local dir=build/$name log=build/$name.ctest.log
  local start=$SECONDS configure_s=0 build_s=0 test_s=0 t
  local passed=0 failed=0 status=ok down=

  echo
  echo "=== $name: configure"
  # A build tree made by another generator cannot be reconfigured with Ninja.
  if [[ -f $dir/CMakeCache.txt ]] &&
     ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$dir/CMakeCache.txt"; then
    rm -rf "$dir"
  fi
  t=$SECONDS
  if ! cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cmake_args[@]}"; then
    status="configure failed"
  fi
  configure_s=$((SECONDS - t))

  if [[ $status == ok ]]; then
    echo "=== $name: build"
    t=$SECONDS
    if ! cmake --build "$dir"; then
      status="build failed"
    fi
    build_s=$((SECONDS - t))
  fi

  if [[ $status == ok ]]; then
    start_servers "$name" "$servers"
    if [[ -n $down ]]; then
      # The phase fails, but its other tests still run. ctest heeds only
      # one -LE, so the labels join the phase's exclusion regex.
      local i excluded=0 labels=${down// /|}
      for ((i = 0; i + 1 < ${#ctest_args[@]}; i++)); do
        if [[ ${ctest_args[i]} == -LE ]]; then
          ctest_args[i + 1]="${ctest_args[i + 1]}|$labels"
          excluded=1
        fi
      done
      ((excluded)) || ctest_args+=(-LE "$labels")
    fi
    echo "=== $name: test"
    t=$SECONDS
    ctest --test-dir "$dir" --output-on-failure --no-tests=error -j"$jobs" \
          "${ctest_args[@]}" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    test_s=$((SECONDS - t))
    # "97% tests passed, 1 tests failed out of 40"
    local counts
    counts=$(sed -nE 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\1 \2/p' "$log" | tail -n 1)
    if [[ -n $counts ]]; then
      failed=${counts% *}
      passed=$((${counts#* } - failed))
    fi
    if ((rc != 0)); then
      status="ctest exited $rc"
    fi
    stop_servers
    if [[ -n $down ]]; then
      status="server(s) did not start: $down; ${status/#ok/other tests ok}"
      failed=$((failed + 1))
    fi
  fi

  # A phase that failed without a failed test (configure, build, no tests
  # found, ctest itself) still counts as one failure.
  if [[ $status != ok ]] && ((failed == 0)); then
    failed=1
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  summaries+=("$(printf '%-6s configure %4ds  build %4ds  test %4ds  total %4ds  (%d passed, %d failed; %s)' \
    "$name" "$configure_s" "$build_s" "$test_s" "$((SECONDS - start))" "$passed" "$failed" "$status")")
  echo "=== $name: $status, $((SECONDS - start))s wall"
}

for phase in "${phases[@]}"; do
  case $phase in
    asan)
      run_phase asan kafka,redis -DEB_SANITIZE=address -- -LE 'tsan|valgrind|bench|install' ;;
    tsan)
      run_phase tsan redis -DEB_SANITIZE=thread -DEB_WITH_CRITERION=OFF -- -L tsan ;;
    plain)
      run_phase plain kafka,redis -DEB_SANITIZE= -DEB_WITH_CRITERION=OFF -- -L 'valgrind|bench|install' ;;
    *)
      echo "test.sh: unknown phase '$phase' (asan, tsan or plain)"
      summaries+=("$phase: unknown phase")
      total_failed=$((total_failed + 1)) ;;
  esac
done

echo
echo "=== wall time per phase"
printf '%s\n' "${summaries[@]}"
echo "all phases: $((SECONDS - run_start))s wall"
echo "$total_passed passed, $total_failed failed"
((total_failed == 0))
