/*
 * crashy.c - the "crashy" test transport: a delivery that kills the daemon.
 *
 * deliver() calls abort() for a recipient whose local part is abort_local
 * (default "crash"), the way a transport bug would take petreld down from
 * a worker thread.  Every other recipient waits delay_ms (default 0) on
 * the worker thread, so that it is still in flight when another delivery
 * crashes, and is then "delivered" (nothing is written: the log line
 * "status=sent (crashy: delivered)" is the evidence).
 *
 * The black-box tests use it to show that a message that crashes the
 * daemon is held after a bounded number of crashes while the rest of the
 * mail is delivered (spool.h, "Delivery attempts").
 */
#include <petrel/petrel.h>

#include <stdlib.h>
#include <strings.h>
#include <time.h>

struct crashy {
	const struct petrel_host *host;
	const char *abort_local;
	long long delay_ms;
};

static int crashy_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	struct crashy *c = calloc(1, sizeof *c);
	if (!c)
		return -1;
	*state = c;
	c->host = host;
	c->abort_local = "crash";
	host->conf_string(conf, "abort_local", &c->abort_local);
	host->conf_int(conf, "delay_ms", &c->delay_ms);
	return 0;
}

static void crashy_fini(void *state)
{
	free(state);
}

static int crashy_deliver(void *state, petrel_delivery *d)
{
	struct crashy *c = state;
	if (!strcasecmp(c->host->delivery_local(d), c->abort_local)) {
		c->host->log(PETREL_LOG_WARN, "crashy: %s: abort() for <%s>",
		             c->host->delivery_qid(d), c->host->delivery_recipient(d));
		abort();
	}
	if (c->delay_ms > 0) {
		struct timespec ts = { .tv_sec = c->delay_ms / 1000,
		                       .tv_nsec = (c->delay_ms % 1000) * 1000000 };
		nanosleep(&ts, NULL);
	}
	c->host->delivery_status(d, "crashy: delivered");
	return PETREL_DELIVERED;
}

static const struct petrel_setting crashy_settings[] = {
	{ .name = "abort_local", .type = PETREL_SET_STRING,
	  .help = "local part whose delivery calls abort() (default crash)" },
	{ .name = "delay_ms", .type = PETREL_SET_INT,
	  .help = "milliseconds every other delivery waits before it succeeds" },
	{ .type = PETREL_SET_END },
};

static const struct petrel_transport_ops crashy_ops = { .deliver = crashy_deliver };

PETREL_MODULE(
	.name = "crashy",
	.version = "1.0",
	.summary = "test transport that aborts the daemon for one local part",
	.settings = crashy_settings,
	.init = crashy_init,
	.fini = crashy_fini,
	.transport = &crashy_ops,
);
