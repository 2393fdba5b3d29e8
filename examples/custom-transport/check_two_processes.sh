#!/bin/sh
# check_two_processes.sh BUILD_DIR — the dirlog transport between processes,
# through one directory, with the plugin and dirlog_check from BUILD_DIR:
#   1. a subscriber process gets every message of two publisher processes
#      appending to one topic at once, each key in order, none twice;
#   2. fail-over: the group's active member is killed (SIGKILL) mid-stream;
#      the standby takes over and the group handles every message (what the
#      dead member had not acknowledged again), each key in order per member;
#   3. hand-over: the active member closes mid-stream; the standby goes on
#      from what it committed: every message, none twice;
#   4. a record cut short (as a publisher killed while writing leaves it)
#      is skipped with a warning, and nothing around it is lost;
#   5. a group position file that makes no sense: one clear error, no member
#      becomes active (nothing skipped); once it is removed the group starts
#      anew and gets every message.
# Waits poll the members' output for a line, each with a deadline.
set -eu
build=$(cd "$1" && pwd)
check=$build/dirlog_check
work=$(mktemp -d /tmp/dirlog-check.XXXXXX)
pids=""
cleanup() {
  for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export EVENTBUS_PLUGIN_PATH=$build
dir=$work/logs
N=3000 # per publisher

fail() { echo "check_two_processes: $*" >&2; exit 1; }

# wait_for FILE PATTERN COUNT: until COUNT lines of FILE match PATTERN.
wait_for() {
  deadline=$(($(date +%s) + 60))
  until [ "$(grep -c "$2" "$1" 2>/dev/null || true)" -ge "$3" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "no $3 '$2' line(s) in $1 within 60 s"
    sleep 0.01 # polling the file for the condition
  done
}

# start_member NAME TOPIC GROUP LAST [WORK_US [INFLIGHT]]: a subscriber in the
# background (it gives up by itself 120 s after it was ready).
start_member() {
  name=$1
  shift
  "$check" sub "$dir" "$@" > "$work/$name.out" 2> "$work/$name.err" &
  pids="$pids $!"
  eval "pid_$name=$!"
}

# verify TOTAL PER_PUBLISHER MAX_DUPLICATES FILES...: messages 0..TOTAL-1
# handled; in each file each key's messages of one publisher in increasing
# order; at most MAX_DUPLICATES handled twice.
verify() {
  total=$1 per=$2 max_dups=$3
  shift 3
  awk -v total="$total" -v per="$per" -v max_dups="$max_dups" '
    $1 == "handled" {
      n = $2 + 0; count[n]++
      k = FILENAME "|" $3 "|" int(n / per)
      if ((k in last) && n <= last[k] && !bad++)
        first = FILENAME ": " $3 ": " n " after " last[k]
      last[k] = n
    }
    END {
      for (i = 0; i < total; i++)
        if (!(i in count)) missing++
        else dups += count[i] - 1
      printf "  %d messages: %d missing, %d handled twice, %d out of order %s\n",
             total, missing, dups, bad, first
      exit (missing || bad || dups > max_dups) ? 1 : 0
    }' "$@"
}

echo "1. one subscriber process, two publisher processes at once"
start_member sub t1 g 6000
wait_for "$work/sub.out" '^ready' 1
"$check" pub "$dir" t1 0 $N > "$work/pub1.out" &
p1=$!
"$check" pub "$dir" t1 $N $N > "$work/pub2.out" &
p2=$!
wait $p1 || fail "publisher 1 failed"
wait $p2 || fail "publisher 2 failed"
"$check" pub "$dir" t1 6000 1 > /dev/null || fail "the last message was not published"
wait "$pid_sub" || fail "the subscriber failed: $(cat "$work/sub.err")"
verify 6001 $N 0 "$work/sub.out" || fail "subscriber across processes"

echo "2. fail-over: the active member is killed"
start_member a t2 g 3000 300 # 0.3 ms a message: killed mid-stream
wait_for "$work/a.out" '^assigned' 1
start_member b t2 g 3000
wait_for "$work/b.out" '^ready' 1
grep -q '^assigned' "$work/b.out" && fail "two active members in one group"
"$check" pub "$dir" t2 0 3000 > /dev/null || fail "publishing failed"
"$check" pub "$dir" t2 3000 1 > /dev/null || fail "the last message was not published"
wait_for "$work/a.out" '^handled' 500
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
wait "$pid_b" || fail "the standby failed: $(cat "$work/b.err")"
grep -q '^assigned' "$work/b.out" || fail "the standby never became active"
echo "  killed member handled $(grep -c '^handled' "$work/a.out"), the standby $(grep -c '^handled' "$work/b.out")"
verify 3001 100000 10000 "$work/a.out" "$work/b.out" || fail "fail-over after a kill"

echo "3. hand-over: the active member closes mid-stream"
"$check" pub "$dir" t3 0 3000 > /dev/null || fail "publishing failed"
"$check" pub "$dir" t3 3000 1 > /dev/null || fail "the last message was not published"
start_member c t3 g 1000 100 50 # closes once it handled message 1000
wait_for "$work/c.out" '^assigned' 1
start_member d t3 g 3000
wait "$pid_c" || fail "the first member failed: $(cat "$work/c.err")"
wait "$pid_d" || fail "the second member failed: $(cat "$work/d.err")"
echo "  first member handled $(grep -c '^handled' "$work/c.out"), the second $(grep -c '^handled' "$work/d.out")"
verify 3001 100000 0 "$work/c.out" "$work/d.out" || fail "hand-over on close"
echo "4. a record cut short is skipped"
"$check" pub "$dir" t4 0 100 > /dev/null || fail "publishing failed"
head -c 30 "$dir/t4/log" >> "$dir/t4/log" # the start of a record, and no more
"$check" pub "$dir" t4 100 100 > /dev/null || fail "publishing after the cut record failed"
"$check" pub "$dir" t4 200 1 > /dev/null || fail "the last message was not published"
start_member e t4 - 200
wait "$pid_e" || fail "the reader failed: $(cat "$work/e.err")"
verify 201 100000 0 "$work/e.out" || fail "reading past a record cut short"
grep -q "skipped 30 bytes" "$work/e.err" || fail "no warning about the record cut short"
echo "5. a group position that makes no sense"
"$check" pub "$dir" t5 0 10 > /dev/null || fail "publishing failed"
"$check" pub "$dir" t5 10 1 > /dev/null || fail "the last message was not published"
echo "twelve" > "$dir/t5/g.pos"
start_member f t5 g 10
wait_for "$work/f.err" "group 'g': no position in g.pos (remove it to start the group anew)" 1
grep -q '^assigned' "$work/f.out" && fail "a member became active past an unusable position"
rm "$dir/t5/g.pos"
wait "$pid_f" || fail "the member failed: $(cat "$work/f.err")"
verify 11 100000 0 "$work/f.out" || fail "the group started anew"
echo "check_two_processes: ok"
