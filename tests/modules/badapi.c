/*
 * badapi.c - the "badapi" test module: built for a module API the daemon
 * does not speak.
 *
 * Its descriptor is written by hand instead of with PETREL_MODULE() so
 * that api_major can claim PETREL_API_MAJOR + 1.  The daemon must refuse
 * it before running any of its code, with a message that names both
 * versions; init() would log (and fail) if it were ever called.
 */
#include <petrel/petrel.h>

static int badapi_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	(void)state;
	host->log(PETREL_LOG_ERROR, "badapi: init ran although the API major differs");
	host->conf_error(conf, "none", "badapi must never be initialised");
	return -1;
}

static int badapi_rcpt(void *state, petrel_txn *t, petrel_addr *rcpt)
{
	(void)state;
	(void)t;
	(void)rcpt;
	return PETREL_REJECT;
}

static const struct petrel_hooks badapi_hooks = { .rcpt = badapi_rcpt };

PETREL_EXPORT const struct petrel_module petrel_module = {
	.api_major = PETREL_API_MAJOR + 1,
	.api_minor = 0,
	.name = "badapi",
	.version = "1.0",
	.summary = "test module: claims a future major API version",
	.init = badapi_init,
	.filter = &badapi_hooks,
};
