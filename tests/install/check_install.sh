#!/bin/sh
# check_install.sh BUILD_DIR SOURCE_DIR — installs the build into a
# temporary prefix, moves the prefix (a relocated install must work), and
# from that prefix alone, with EVENTBUS_PLUGIN_PATH unset:
#   - `eventbus plugins` lists the installed transports and only them;
#   - the README's example (examples/hello/) builds with its Makefile and
#     with pkg-config (eventbus.pc), and with find_package(eventbus)
#     (eventbus::eventbus), and runs;
#   - a plugin source builds against eventbus::transport and against
#     eventbus-transport.pc without linking libeventbus.
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
echo "check_install: ok ($prefix)"
