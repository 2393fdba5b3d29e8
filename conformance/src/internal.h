/*
 * internal.h — the case context shared by conformance.c (running a case)
 * and helpers.c (what a case allocates, opens and counts). Cases see it only
 * through the functions of conformance.h.
 */
#ifndef EB_CONFORMANCE_INTERNAL_H
#define EB_CONFORMANCE_INTERNAL_H

#include "eventbus/conformance.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>

#define EB_CONF_MAX_EVENT 16

struct eb_conf_hook {
    void (*fn)(void *);
    void *arg;
};

struct eb_conf_free {
    void (*fn)(void *);
    void *ptr;
};

struct eb_conf_ctx {
    const eb_conf_case *c;
    pthread_t thread;          /* the case's own thread */
    jmp_buf jmp;               /* where a failed check on that thread lands */
    uint64_t features;
    char transport[64];

    pthread_mutex_t lock;      /* guards the outcome below */
    int failed, skipped;
    unsigned printed_failures;
    char message[2048];
    int in_teardown;

    atomic_ulong events[EB_CONF_MAX_EVENT];
    atomic_uint name_counter;

    /* What teardown undoes, in this order: hooks, buses, memory (LIFO). */
    struct eb_conf_hook *hooks;
    size_t nhooks, cap_hooks;
    eb_bus **buses;
    size_t nbuses, cap_buses;
    struct eb_conf_free *frees;
    size_t nfrees, cap_frees;
};

/** The running case of this process, or NULL. */
eb_conf_ctx *eb_conf_current(void);

/** Applies the suite's settings to cfg (settings.c). @returns 0, or an
 *  EB_ERR_* with the sentence in errstr. */
int eb__conf_apply_settings(eb_config *cfg, char *errstr, size_t errstr_size);
/** The retention the transport declared (0: not limited). */
unsigned long eb__conf_retention(void);
/** Writes the names of the EB_FEATURE_* flags in mask, joined by sep. */
void eb__conf_feature_list(uint64_t mask, const char *sep, char *buf, size_t size);

/* The cases, one function each (the table in conformance.c names them). */
#define EB_CONF_DECLARE_(name, req, any, flags, retention) void eb_case_##name(eb_conf_ctx *ctx);
EB_CONF_CASE_LIST(EB_CONF_DECLARE_)
#undef EB_CONF_DECLARE_


#endif
