#!/usr/bin/env bash
# tests/servers/test_redis_sh.sh — checks tests/servers/redis.sh against its
# own temporary run directory (never another instance): start and its
# exports, the ACL test user, AOF durability across down/up and down -9/up,
# freeze, stop. ctest label "redis" (tests/servers/CMakeLists.txt).
set -euo pipefail

ctl=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/redis.sh
password=eb-test-pw-$$
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/eb-redis-sh.XXXXXX")
export EB_REDIS_RUN_DIR=$run_dir EB_REDIS_PERSISTENCE=aof EB_REDIS_TEST_PASSWORD=$password
freeze_pid=

cleanup() {
  [[ -z $freeze_pid ]] || kill "$freeze_pid" 2>/dev/null || true
  "$ctl" stop >/dev/null 2>&1 || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

fail() {
  echo "test_redis_sh.sh: FAIL: $*" >&2
  exit 1
}
pass() {
  echo "ok - $*"
}
# expect_eq WHAT GOT WANT
expect_eq() {
  [[ $2 == "$3" ]] || fail "$1: got '$2', want '$3'"
}

# cli ARGS...: redis-cli to the server as the default user, 5 s at most.
cli() {
  timeout 5 redis-cli -h 127.0.0.1 -p "$EB_REDIS_PORT" "$@"
}

# ---------------------------------------------------------------- start
out=$("$ctl" start) || fail "start exited $?"
for var in EB_REDIS_URL EB_REDIS_PORT EB_REDIS_RUN_DIR EB_REDIS_CTL \
           EB_REDIS_TEST_USER EB_REDIS_TEST_PASSWORD; do
  grep -q "^export $var=." <<<"$out" || fail "start printed no 'export $var=': $out"
done
eval "$out"
[[ $EB_REDIS_PORT =~ ^[0-9]+$ ]] || fail "EB_REDIS_PORT is '$EB_REDIS_PORT'"
expect_eq EB_REDIS_URL "$EB_REDIS_URL" "redis://127.0.0.1:$EB_REDIS_PORT"
expect_eq EB_REDIS_RUN_DIR "$EB_REDIS_RUN_DIR" "$(cd "$run_dir" && pwd)"
expect_eq EB_REDIS_CTL "$EB_REDIS_CTL" "$ctl"
expect_eq EB_REDIS_TEST_USER "$EB_REDIS_TEST_USER" eb-test
expect_eq EB_REDIS_TEST_PASSWORD "$EB_REDIS_TEST_PASSWORD" "$password"
expect_eq "PING" "$(cli ping)" PONG
expect_eq "appendonly" "$(cli config get appendonly | tail -n 1)" yes
expect_eq "appendfsync" "$(cli config get appendfsync | tail -n 1)" always
expect_eq "maxmemory-policy" "$(cli config get maxmemory-policy | tail -n 1)" noeviction
"$ctl" status >/dev/null || fail "status exited $? while running"
expect_eq "env" "$("$ctl" env)" "$out"
expect_eq "second start (reuse)" "$("$ctl" start 2>/dev/null)" "$out"
pass "start prints the exports, PING answers PONG, a second start reuses it"

# ---------------------------------------------------------------- ACL user
expect_eq "PING as eb-test" \
  "$(cli --no-auth-warning --user eb-test --pass "$password" ping)" PONG
expect_eq "ACL WHOAMI as eb-test" \
  "$(cli --no-auth-warning --user eb-test --pass "$password" acl whoami)" eb-test
if reply=$(cli -e auth eb-test wrong-password 2>&1); then
  fail "AUTH eb-test with a wrong password succeeded: $reply"
fi
[[ $reply == *WRONGPASS* ]] || fail "AUTH with a wrong password said '$reply', not WRONGPASS"
# redis-cli goes on as the (passwordless) default user after a failed AUTH.
reply=$(cli --no-auth-warning --user eb-test --pass wrong-password acl whoami 2>&1) || true
[[ $reply == *WRONGPASS* && $reply != *$'\n'eb-test* && $reply != eb-test ]] ||
  fail "redis-cli --user eb-test with a wrong password: '$reply'"
expect_eq "ACL WHOAMI without AUTH" "$(cli acl whoami)" default
pass "ACL user eb-test authenticates; a wrong password gets WRONGPASS"

# ---------------------------------------------------------------- down / up
id1=$("$ctl" cli XADD s '*' f v1) || fail "XADD failed"
[[ $id1 =~ ^[0-9]+-[0-9]+$ ]] || fail "XADD returned '$id1'"
"$ctl" down 2>/dev/null || fail "down exited $?"
if "$ctl" status >/dev/null; then fail "status says running after down"; fi
if timeout 2 redis-cli -h 127.0.0.1 -p "$EB_REDIS_PORT" ping >/dev/null 2>&1; then
  fail "something still answers on port $EB_REDIS_PORT after down"
fi
up_out=$("$ctl" up 2>/dev/null) || fail "up exited $?"
expect_eq "env after up" "$up_out" "$out"
expect_eq "PING after up" "$(cli ping)" PONG
expect_eq "XRANGE after down + up" "$(cli XRANGE s - + | head -n 1)" "$id1"
pass "an entry survives down + up on port $EB_REDIS_PORT"

id2=$("$ctl" cli XADD s '*' f v2) || fail "XADD failed"
pid=$(<"$run_dir/redis.pid")
"$ctl" down -9 2>/dev/null || fail "down -9 exited $?"
[[ ! -e /proc/$pid ]] || [[ $(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) == Z ]] ||
  fail "pid $pid still runs after down -9"
"$ctl" up >/dev/null 2>&1 || fail "up after down -9 exited $?"
expect_eq "XLEN after down -9 + up" "$(cli XLEN s)" 2
expect_eq "last entry after down -9 + up" "$(cli XREVRANGE s + - COUNT 1 | head -n 1)" "$id2"
pass "an entry written just before down -9 survives up (appendfsync always)"

# ---------------------------------------------------------------- freeze
"$ctl" freeze 2 2>/dev/null &
freeze_pid=$!
saw_frozen=0
deadline=$((SECONDS + 10))
while ((SECONDS < deadline)); do
  if ! timeout 1 redis-cli -h 127.0.0.1 -p "$EB_REDIS_PORT" ping >/dev/null 2>&1; then
    saw_frozen=1
    break
  fi
  sleep 0.05
done
((saw_frozen)) || fail "redis-cli (1 s timeout) never failed during freeze 2"
saw_woken=0
deadline=$((SECONDS + 15))
while ((SECONDS < deadline)); do
  if [[ $(timeout 1 redis-cli -h 127.0.0.1 -p "$EB_REDIS_PORT" ping 2>/dev/null) == PONG ]]; then
    saw_woken=1
    break
  fi
  sleep 0.05
done
((saw_woken)) || fail "the server did not answer PING again after freeze 2"
wait "$freeze_pid" || fail "freeze exited $?"
freeze_pid=
expect_eq "XLEN after freeze" "$(cli XLEN s)" 2
pass "freeze 2: PING times out during the freeze and answers after it"

# ---------------------------------------------------------------- up --empty
"$ctl" down 2>/dev/null || fail "down exited $?"
"$ctl" up --empty >/dev/null 2>&1 || fail "up --empty exited $?"
expect_eq "EXISTS after up --empty" "$(cli EXISTS s)" 0
expect_eq "ACL user after up --empty" \
  "$(redis-cli -h 127.0.0.1 -p "$EB_REDIS_PORT" --user eb-test --pass "$EB_REDIS_TEST_PASSWORD" \
       --no-auth-warning ping)" PONG
pass "up --empty brings the server back with no data"

# ---------------------------------------------------------------- stop
pid=$(<"$run_dir/redis.pid")
"$ctl" stop 2>/dev/null || fail "stop exited $?"
rc=0
"$ctl" status >/dev/null || rc=$?
expect_eq "status exit code after stop" "$rc" 3
for proc in /proc/[0-9]*; do
  cmdline=$({ tr '\0' ' ' <"$proc/cmdline"; } 2>/dev/null) || continue
  [[ $cmdline != *redis-server*"$run_dir"* ]] || fail "${proc#/proc/} still runs: $cmdline"
done
[[ ! -e $run_dir/data ]] || fail "stop left $run_dir/data"
if timeout 2 redis-cli -h 127.0.0.1 -p "$EB_REDIS_PORT" ping >/dev/null 2>&1; then
  fail "something still answers on port $EB_REDIS_PORT after stop"
fi
pass "stop leaves no redis-server of $run_dir (was pid $pid), its data is gone, status exits 3"
