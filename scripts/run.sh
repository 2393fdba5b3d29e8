#!/usr/bin/env bash
# run.sh — the main job on a fresh machine: installs what is missing, builds
# a release build in build/release and runs `eventbus bench` on the memory
# transport (no server needed).
# usage: scripts/run.sh [eventbus bench arguments...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh

build=build/release
# A build tree made by another generator cannot be reconfigured with Ninja.
if [[ -f $build/CMakeCache.txt ]] &&
   ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$build/CMakeCache.txt"; then
  rm -rf "$build"
fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEB_WITH_TESTS=OFF
cmake --build "$build"
# The build tree keeps its plugins in build/release/plugins (installed ones
# are found beside libeventbus without this).
export EVENTBUS_PLUGIN_PATH="$PWD/$build/plugins${EVENTBUS_PLUGIN_PATH:+:$EVENTBUS_PLUGIN_PATH}"
exec "$build/tools/eventbus" bench "$@"
