#!/bin/sh
# check_conformance_kit.sh BUILD_DIR — installs the build into a temporary
# prefix, moves the prefix, and checks the conformance kit from there alone
# with EVENTBUS_PLUGIN_PATH unset:
#   - libeventbus-conformance has its SONAME, needs libeventbus and not
#     criterion; the runner bin/eventbus-conformance finds its libraries
#     relative to itself and passes a case on the installed memory plugin;
#   - `eventbus conformance` does the same;
#   - a program of one's own built with find_package(eventbus)
#     (eventbus::conformance) and one built with eventbus-conformance.pc
#     run the cases through eb_conformance_run() and <eventbus/conformance.h>.
# Needs a build without sanitizers (scripts/test.sh's plain phase).
set -eu
build=$1
work=$(mktemp -d /tmp/eb-conformance-kit.XXXXXX)
trap 'rm -rf "$work"' EXIT
unset EVENTBUS_PLUGIN_PATH

cmake --install "$build" --prefix "$work/first" >/dev/null
mv "$work/first" "$work/prefix"
prefix=$work/prefix
fail() { echo "check_conformance_kit: $*" >&2; exit 1; }

lib=$prefix/lib/libeventbus-conformance.so.0
[ -f "$lib" ] || fail "no $lib"
[ -f "$prefix/include/eventbus/conformance.h" ] || fail "no include/eventbus/conformance.h"
dyn=$(objdump -p "$lib") || fail "objdump $lib failed"
echo "$dyn" | grep -q "SONAME *libeventbus-conformance.so.0" || fail "no SONAME in $lib"
echo "$dyn" | grep -q "NEEDED *libeventbus.so.0" || fail "$lib does not need libeventbus"
echo "$dyn" | grep -qi "NEEDED.*criterion" && fail "$lib needs criterion"
objdump -p "$prefix/bin/eventbus-conformance" | grep -q 'RUNPATH *\$ORIGIN/../lib' ||
  fail "bin/eventbus-conformance has no RUNPATH \$ORIGIN/../lib"

# Both runners, on the installed memory plugin alone.
expect_pass() { # OUTPUT CASE
  echo "$1" | grep -q "^ok $2 " || fail "$2 did not pass: $1"
  echo "$1" | grep -q "^1 passed, 0 failed, 0 skipped$" || fail "no summary line: $1"
}
out=$("$prefix/bin/eventbus-conformance" --case anonymous_member) ||
  fail "eventbus-conformance failed: $out"
expect_pass "$out" anonymous_member
out=$("$prefix/bin/eventbus" conformance --case duplicate_subscription) ||
  fail "eventbus conformance failed: $out"
expect_pass "$out" duplicate_subscription

# A runner of one's own: the kit's header and library.
mkdir "$work/own"
cat > "$work/own/own_runner.c" <<'C'
#include <eventbus/conformance.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    size_t n = 0;
    eb_conformance_cases(&n);
    fprintf(stderr, "%zu cases\n", n);
    return eb_conformance_run(argc, argv);
}
C
cat > "$work/own/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(own_runner C)
find_package(eventbus 0.1 REQUIRED)
add_executable(own_runner own_runner.c)
target_link_libraries(own_runner PRIVATE eventbus::conformance)
if(NOT EXISTS "${eventbus_CONFORMANCE_RUNNER}")
  message(FATAL_ERROR "eventbus_CONFORMANCE_RUNNER: no ${eventbus_CONFORMANCE_RUNNER}")
endif()
CMAKE
cmake -S "$work/own" -B "$work/own/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_RPATH="$prefix/lib" >/dev/null || fail "find_package(eventbus) failed"
cmake --build "$work/own/build" >/dev/null || fail "eventbus::conformance does not build"
out=$("$work/own/build/own_runner" --case bad_input) || fail "own_runner (CMake) failed: $out"
expect_pass "$out" bad_input

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc -o "$work/own_runner_pc" "$work/own/own_runner.c" \
  $(pkg-config --cflags --libs eventbus-conformance) -Wl,-rpath,"$prefix/lib" ||
  fail "a runner does not build with eventbus-conformance.pc"
out=$("$work/own_runner_pc" --case bad_input) || fail "own_runner (pkg-config) failed: $out"
expect_pass "$out" bad_input
echo "check_conformance_kit: ok ($prefix)"
