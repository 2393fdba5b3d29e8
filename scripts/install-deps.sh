#!/usr/bin/env bash
# install-deps.sh — installs the Debian 12 packages eventbus needs to build,
# test and benchmark. Idempotent and fast when everything is there: one
# dpkg-query, and apt-get (update once, then install) only for what is missing.
set -euo pipefail

# One package a line; a new dependency is one more line.
packages=(
  build-essential
  cmake
  ninja-build
  pkg-config
  libltdl-dev
  libcriterion-dev
  valgrind
  librdkafka-dev
  libhiredis-dev
  # JSON lines of `eventbus pub/sub --format json` (the tool only).
  libjansson-dev
  # Test servers and clients (tests/servers/): kcat talks to the Kafka
  # broker, whose jars mvn fetches from Maven Central; redis-server and
  # redis-cli (redis-tools) for the Redis Streams transport.
  kcat
  maven
  redis-server
  redis-tools
)
# The Kafka broker runs on the machine's Java (17 on Debian 12); install
# Debian's default only where there is none.
if ! command -v java >/dev/null; then
  packages+=(default-jre-headless)
fi

# dpkg-query prints nothing for a package it has never heard of, so anything
# not reported as "install ok installed" is missing.
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null |
            awk '$2 == "install" && $3 == "ok" && $4 == "installed" { print $1 }' || true)
missing=()
for package in "${packages[@]}"; do
  if ! grep -qxF "$package" <<<"$installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

as_root=()
if ((EUID != 0)); then
  if ! command -v sudo >/dev/null; then
    echo "install-deps.sh: missing ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  as_root=(sudo)
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
