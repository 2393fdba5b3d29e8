#!/usr/bin/env bash
# test.sh — the README's test command (and CI's): installs what is missing,
# then builds and runs every test in three builds under build/:
#   asan   address+undefined: criterion suites, lifecycle, ASan canaries
#          (every label except tsan, valgrind and bench)
#   tsan   thread, without criterion (it cannot run under TSan): label tsan
#   plain  no sanitizer: labels valgrind and bench (smoke size)
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

if ! bash scripts/install-deps.sh; then
  echo "test.sh: installing the dependencies failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# run_phase NAME CMAKE_ARGS... -- CTEST_ARGS...
# Configures, builds and tests build/NAME; adds its counts to the totals.
run_phase() {
  local name=$1
  shift
  local -a cmake_args=() ctest_args=()
  while (($# > 0)) && [[ $1 != -- ]]; do
    cmake_args+=("$1")
    shift
  done
  shift
  ctest_args=("$@")

  local dir=build/$name log=build/$name.ctest.log
  local start=$SECONDS configure_s=0 build_s=0 test_s=0 t
  local passed=0 failed=0 status=ok

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
      run_phase asan -DEB_SANITIZE=address -- -LE 'tsan|valgrind|bench' ;;
    tsan)
      run_phase tsan -DEB_SANITIZE=thread -DEB_WITH_CRITERION=OFF -- -L tsan ;;
    plain)
      run_phase plain -DEB_SANITIZE= -DEB_WITH_CRITERION=OFF -- -L 'valgrind|bench' ;;
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
