#!/usr/bin/env bash
# roundtrip.sh — the pub/sub round trip of issue 10 through any transport:
# N generated JSON lines (tests/tools/json_lines.c: keys null, empty,
# binary and text; duplicate, binary and empty headers; empty, binary and
# long payloads) go through `eventbus pub --format json` in one process
# and come back from `eventbus sub --format json -n N` (a new group, from
# the earliest) in another, started first; then every field is compared
# byte for byte, in order per key and as a multiset. Prints the timings.
#
# usage: roundtrip.sh [--messages N] [--seed S] [--timeout SECONDS]
#                     TOOL LINES_TOOL [-c FILE] [-X key=value]...
#   TOOL        the eventbus command (build tree or installed)
#   LINES_TOOL  the json_lines program of tests/tools
#   -c, -X      the transport's settings, given to both pub and sub
# $EB_TEST_SET (key=value, set by tests/conformance/with_server.sh) is one
# more -X. Exit 0 same, 1 different or a command failed, 2 bad usage.
set -euo pipefail

messages=10000 seed=10 timeout=300
while (($# > 0)); do
  case $1 in
    --messages) messages=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    *) break ;;
  esac
done
if (($# < 2)); then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
  exit 2
fi
tool=$1 lines_tool=$2
shift 2
settings=("$@")
if [[ -n ${EB_TEST_SET:-} ]]; then
  settings+=(-X "$EB_TEST_SET")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/eventbus-roundtrip.XXXXXX")
sub_pid=
cleanup() {
  if [[ -n $sub_pid ]] && kill -0 "$sub_pid" 2>/dev/null; then
    kill "$sub_pid" 2>/dev/null || true
    wait "$sub_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

topic=eventbus-roundtrip-$$-$RANDOM
group=roundtrip-$$-$RANDOM
"$lines_tool" gen "$messages" "$seed" >"$work/sent"
echo "roundtrip: $messages lines ($(wc -c <"$work/sent") bytes) through topic $topic"

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

start=$(now)
timeout "$timeout" "$tool" sub "$topic" -g "$group" --from earliest -n "$messages" \
  --format json "${settings[@]}" >"$work/received" 2>"$work/sub.err" &
sub_pid=$!
pub_rc=0
timeout "$timeout" "$tool" pub "$topic" --format json "${settings[@]}" \
  <"$work/sent" 2>"$work/pub.err" || pub_rc=$?
published=$(now)
sub_rc=0
wait "$sub_pid" || sub_rc=$?
sub_pid=
received=$(now)

echo "roundtrip: pub exited $pub_rc after $(seconds "$start" "$published") s;" \
     "sub exited $sub_rc after $(seconds "$start" "$received") s with" \
     "$(wc -l <"$work/received") lines"
status=0
if ((pub_rc != 0)); then
  echo "roundtrip: pub failed:"; head -n 20 "$work/pub.err"; status=1
fi
if ((sub_rc != 0)); then
  echo "roundtrip: sub failed (124: still waiting at the timeout):"; head -n 20 "$work/sub.err"
  status=1
fi
"$lines_tool" compare --ignore id,attempt,topic "$work/sent" "$work/received" || status=1
exit "$status"
