/*
 * delivery.h - one delivery attempt (the opaque petrel_delivery of the
 * module API): one message to the recipients of one destination.
 *
 * A deliver() call (worker thread) carries exactly one recipient; a 1.2
 * start() (event loop) carries every due recipient of the message with the
 * same transport and next hop.  Results are kept per recipient until they
 * are applied (delivery_apply): the status byte in the queue file, the
 * log line, the report flags.  queue.c owns the struct; host.c fills it
 * for the module.
 */
#ifndef PETREL_DELIVERY_H
#define PETREL_DELIVERY_H

#include <stdbool.h>
#include <sys/types.h>
#include <petrel/petrel.h>
#include "queue.h"

struct module;
struct route;

#define DLV_NO_RESULT (-1)

/* A transport's result as the core keeps it: one of the PETREL_* results
 * the API defines, anything else (a value of a newer API, garbage) is a
 * deferral, so that nothing unknown is taken for delivered. */
static inline int delivery_result_known(int r)
{
	return r == PETREL_DELIVERED || r == PETREL_BOUNCE || r == PETREL_RELAYED ||
	       r == PETREL_DELIVERED_FINAL ? r : PETREL_DEFER;
}

struct petrel_delivery {
	struct qmsg *m;
	struct qdest *d;         /* the first (for deliver(): the only) recipient */
	int fd;                  /* the queue file */
	off_t pos;               /* next byte of the message to read */
	char status[512];        /* text for the log and a report (delivery_status) */
	/* 1.2 */
	int n;                   /* recipients */
	int *idx;                /* their indexes in m->dests */
	signed char *result;     /* PETREL_* per recipient, DLV_NO_RESULT until reported */
	const char *nexthop;     /* "" for MX; lives with the configuration */
	const struct route *route;   /* the route that chose it, or NULL */
	char relay[256];         /* delivery_relay, "" until set */
	struct module *mod;
	struct generation *gen;  /* a reference: mod, route and nexthop live with it */
	bool async;              /* started with start(): results apply at once, on the loop */
	double start;            /* when the attempt began (delays=) */
	char **orcpt;            /* ORCPTs with xtext undone, made on demand */
	char *envid;             /* ENVID with xtext undone, made on demand */
};

/* Apply the result of recipient i (queue.c): status byte, log line,
 * report flags.  Any thread, for a recipient no other thread touches. */
void delivery_apply(struct petrel_delivery *dl, int i, int result, const char *text);
/* The asynchronous delivery is over (host->delivery_done). Loop thread. */
void delivery_finished(struct petrel_delivery *dl);

#endif
