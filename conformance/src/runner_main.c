/*
 * runner_main.c — eventbus-conformance, the installed plain runner (also
 * the TSan build's): all of it is eb_conformance_run() in runner.c, which
 * `eventbus conformance` shares.
 */
#include "eventbus/conformance.h"

int main(int argc, char **argv)
{
    return eb_conformance_run(argc, argv);
}
