/*
 * delivery.h - one delivery attempt (the opaque petrel_delivery of the
 * module API): one message to one destination, on a worker thread.
 */
#ifndef PETREL_DELIVERY_H
#define PETREL_DELIVERY_H

#include <sys/types.h>
#include <petrel/petrel.h>
#include "queue.h"

struct petrel_delivery {
	struct qmsg *m;
	struct qdest *d;
	int fd;              /* the queue file */
	off_t pos;           /* next byte of the message to read */
	char status[512];    /* text for the log and a bounce */
};

#endif
