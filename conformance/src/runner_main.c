/*
 * runner.c — the plain conformance runner (no criterion; the TSan build
 * uses it): every case in its own process with a timeout. The logic lives
 * in eb_conformance_run() so `eventbus conformance` can share it.
 */
#include "eventbus/conformance.h"

int main(int argc, char **argv)
{
    return eb_conformance_run(argc, argv);
}
