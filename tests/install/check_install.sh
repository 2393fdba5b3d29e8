#!/bin/sh
# check_install.sh BUILD_DIR SOURCE_DIR — installs the build into a
# temporary prefix, moves the prefix (a relocated install must work), and
# from that prefix alone, with EVENTBUS_PLUGIN_PATH unset:
#   - `eventbus plugins` lists the installed transports and only them;
#   - the README's example (examples/hello/) builds with its Makefile and
#     with pkg-config (eventbus.pc), and with find_package(eventbus)
#     (eventbus::eventbus), and runs;
#   - a plugin source builds against eventbus::transport and against
#     eventbus-transport.pc without linking libeventbus;
#   - the example transport (examples/custom-transport/, dirlog) builds with
#     CMake from the prefix without linking libeventbus; `eventbus plugins`
#     lists it with its flags; its bad settings get one-line errors; it
#     passes the conformance cases (the installed `eventbus conformance
#     --transport PATH`) and the checks across processes
#     (check_two_processes.sh), and carries the pub/sub round trip of
#     10,000 JSON lines (tests/tools/roundtrip.sh) between two processes;
#   - the man page eventbus(1) is installed and renders without warnings.
# Needs a build without sanitizers (scripts/test.sh's plain phase): the
# consumers here are built without them.
set -eu
build=$1 src=$2
work=$(mktemp -d /tmp/eb-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
unset EVENTBUS_PLUGIN_PATH

cmake --install "$build" --prefix "$work/first" >/dev/null
mv "$work/first" "$work/prefix"
prefix=$work/prefix
fail() { echo "check_install: $*" >&2; exit 1; }

# The installed tool lists the installed plugins, nothing else.
list=$("$prefix/bin/eventbus" plugins) || fail "eventbus plugins failed"
echo "$list"
echo "$list" | grep -q "^memory  .* $prefix/lib/eventbus/eventbus-memory.so" ||
  fail "memory is not listed from the prefix"
echo "$list" | grep -v -q "$prefix/" && fail "a plugin from outside the prefix is listed"
echo "$list" | grep -q "refused" && fail "an installed plugin is refused"

# An application with pkg-config: by hand, and with examples/hello's Makefile.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc -o "$work/hello-pc" "$src/examples/hello/hello.c" $(pkg-config --cflags --libs eventbus) \
  -Wl,-rpath,"$prefix/lib" || fail "hello.c does not build with eventbus.pc"
out=$("$work/hello-pc") || fail "hello (pkg-config) failed"
echo "$out" | grep -q "greetings: hello" || fail "hello (pkg-config) printed: $out"
cp -r "$src/examples/hello" "$work/hello-make"
rm -f "$work/hello-make/hello"
make -s -C "$work/hello-make" >/dev/null || fail "examples/hello does not build with its Makefile"
out=$("$work/hello-make/hello") || fail "hello (Makefile) failed"
echo "$out" | grep -q "greetings: hello" || fail "hello (Makefile) printed: $out"

# An application and a plugin with find_package(eventbus).
mkdir "$work/consumer"
cp "$src/examples/hello/hello.c" "$work/consumer/"
cat > "$work/consumer/plugin.c" <<'C'
#include <eventbus/transport.h>
/* Built only to prove the headers suffice: no libeventbus symbol is used. */
EB_TRANSPORT_EXPORT const eb_transport *eb_transport_entry(void) { return 0; }
C
cat > "$work/consumer/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(eventbus 0.1 REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE eventbus::eventbus)
set_target_properties(hello PROPERTIES BUILD_RPATH "${eventbus_PLUGIN_DIR}/..")
add_library(eventbus-none MODULE plugin.c)
target_link_libraries(eventbus-none PRIVATE eventbus::transport)
set_target_properties(eventbus-none PROPERTIES PREFIX "")
CMAKE
cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null ||
  fail "find_package(eventbus) failed"
cmake --build "$work/consumer/build" >/dev/null || fail "the find_package consumer does not build"
out=$("$work/consumer/build/hello") || fail "hello (CMake) failed"
echo "$out" | grep -q "greetings: hello" || fail "hello (CMake) printed: $out"
needed=$(objdump -p "$work/consumer/build/eventbus-none.so") ||
  fail "the plugin built against eventbus::transport is missing"
echo "$needed" | grep -q "NEEDED.*libeventbus" &&
  fail "a plugin built against eventbus::transport links libeventbus"
cc -shared -fPIC -o "$work/eventbus-none2.so" "$work/consumer/plugin.c" \
  $(pkg-config --cflags eventbus-transport) || fail "a plugin does not build with eventbus-transport.pc"
# The example transport, from the prefix alone.
dirlog=$work/dirlog
cmake -S "$src/examples/custom-transport" -B "$dirlog" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null ||
  fail "examples/custom-transport does not configure against the prefix"
cmake --build "$dirlog" >/dev/null || fail "examples/custom-transport does not build"
objdump -p "$dirlog/eventbus-dirlog.so" | grep -q "NEEDED.*libeventbus" &&
  fail "the dirlog plugin links libeventbus"
list=$(EVENTBUS_PLUGIN_PATH=$dirlog "$prefix/bin/eventbus" plugins) || fail "eventbus plugins failed"
echo "$list" | grep -qx "dirlog  0.1.0  abi 1.2  durable,key-order,redelivery,headers,timestamps,failover-groups  $dirlog/eventbus-dirlog.so" ||
  fail "eventbus plugins does not list dirlog with its flags: $list"

# expect_error WANT ARGS...: `eventbus ARGS` exits 2 with the one line WANT.
expect_error() {
  want=$1
  shift
  set +e
  err=$(EVENTBUS_PLUGIN_PATH=$dirlog "$prefix/bin/eventbus" "$@" -X transport=dirlog 2>&1 >/dev/null)
  rc=$?
  set -e
  [ "$rc" = 2 ] && [ "$err" = "$want" ] || fail "eventbus $*: exit $rc, '$err', expected 2, '$want'"
}
expect_error "eventbus: config: dirlog.dirr: unknown key; did you mean 'dirlog.dir'?" \
  config --check -X dirlog.dirr=/tmp
expect_error "eventbus: config: dirlog.poll.ms: '0' is not a number of milliseconds from 1 to 10000" \
  config --check -X dirlog.poll.ms=0
expect_error "eventbus: bench: dirlog.dir is not set: name the directory that holds the topics (created if missing)" \
  bench --messages 1
touch "$work/a-file"
expect_error "eventbus: bench: dirlog.dir '$work/a-file': cannot open it: Not a directory" \
  bench --messages 1 -X dirlog.dir="$work/a-file"

# The installed tool proves the plugin by its path: every case its flags
# claim passes; the one skipped needs GROUPS (members sharing the work).
"$prefix/bin/eventbus" conformance --transport "$dirlog/eventbus-dirlog.so" \
  -X dirlog.dir="$work/dirlog-logs" > "$work/conformance.out" 2>&1 ||
  { cat "$work/conformance.out"; fail "dirlog fails conformance cases"; }
summary=$(tail -n 1 "$work/conformance.out")
echo "dirlog conformance: $summary"
echo "$summary" | grep -Eqx '[0-9]+ passed, 0 failed, 1 skipped' ||
  { cat "$work/conformance.out"; fail "dirlog conformance: expected one skip, got: $summary"; }
grep -q '^skip two_members_split' "$work/conformance.out" ||
  fail "dirlog conformance skipped another case than two_members_split"
sh "$src/examples/custom-transport/check_two_processes.sh" "$dirlog" ||
  fail "dirlog between processes"
# The round trip of issue 10 over dirlog, with the installed tool: 10,000
# JSON lines through `pub` in one process and back from `sub` in another.
EVENTBUS_PLUGIN_PATH=$dirlog bash "$src/tests/tools/roundtrip.sh" "$prefix/bin/eventbus" \
  "$build/tests/tools/json_lines" -X transport=dirlog -X dirlog.dir="$work/roundtrip-logs" ||
  fail "the pub/sub round trip over dirlog"
man1=$prefix/share/man/man1/eventbus.1
[ -f "$man1" ] || fail "the man page is not installed ($man1)"
if command -v man >/dev/null 2>&1; then
  warnings=$(man --warnings -l "$man1" 2>&1 >/dev/null) || fail "man cannot render $man1"
  [ -z "$warnings" ] || fail "the man page renders with warnings: $warnings"
fi
echo "check_install: ok ($prefix)"
