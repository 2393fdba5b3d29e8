#!/bin/sh
# with_server.sh VAR KEY PROGRAM [ARGS...] — runs a suite against a server
# whose address is known only at run time: PROGRAM gets
# EB_TEST_SET="KEY=<value of VAR>". Exits 77 (ctest: skipped) when
# VAR is unset; scripts/test.sh fails on its own when it could not start
# the server, so a skip never hides a broken set-up there.
var=$1 key=$2
shift 2
eval "value=\${$var:-}"
if [ -z "$value" ]; then
    echo "skip: $var is not set (start the server: tests/servers/README.md)"
    exit 77
fi
EB_TEST_SET="$key=$value" exec "$@"
