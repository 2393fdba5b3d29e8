/*
 * errors.c — error sentences and names, generated from the one table in
 * eventbus.h (EB_ERRNO_MAP), plus the library's version and eb_free().
 */
#include <stdlib.h>

#include "eventbus/eventbus.h"

const char *eb_version(void) { return EB_VERSION_STRING; }

const char *eb_strerror(int err)
{
    switch (err) {
    case EB_OK:
        return "success";
#define EB_ERR_TEXT_(name, value, text) case value: return text;
        EB_ERRNO_MAP(EB_ERR_TEXT_)
#undef EB_ERR_TEXT_
    default:
        return "unknown error code";
    }
}

const char *eb_err_name(int err)
{
    switch (err) {
    case EB_OK:
        return "EB_OK";
#define EB_ERR_NAME_(name, value, text) case value: return "EB_ERR_" #name;
        EB_ERRNO_MAP(EB_ERR_NAME_)
#undef EB_ERR_NAME_
    default:
        return "EB_ERR_UNKNOWN";
    }
}

void eb_free(void *ptr) { free(ptr); }
