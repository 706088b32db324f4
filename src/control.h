/*
 * control.h - the control socket: petrelctl's way into the running daemon.
 *
 * A Unix stream socket (control_socket, SPOOL/control by default), bound
 * before privileges are dropped, mode 0660, owner root, group of 'user'.
 * Only uid 0 and the daemon's user may use it: the peer credentials
 * (SO_PEERCRED) of each connection are checked at accept, and anyone else
 * gets an error reply and is closed.  The protocol (one request per line,
 * replies as JSON lines ending with {"ok":true} or {"ok":false,...}) is in
 * doc/control-protocol.md.
 *
 * Bounds: a request line is at most CONTROL_LINE_MAX bytes; at most
 * CONTROL_MAX_CLIENTS connections at once (more get an error and are
 * closed); each connection has a deadline that moves on with progress; a
 * long reply (the queue listing) is produced as the socket drains, never
 * more than about CONTROL_OUT_HIGH bytes ahead of the reader.
 *
 * Ownership: the struct control belongs to the server; control_free
 * closes every connection and removes the socket.
 */
#ifndef PETREL_CONTROL_H
#define PETREL_CONTROL_H

#include "mem.h"

#define CONTROL_LINE_MAX 4096
#define CONTROL_MAX_CLIENTS 4
#define CONTROL_TIMEOUT_MS 30000
#define CONTROL_OUT_HIGH 65536

struct server;
struct control;

/* Bind the socket (as root, before the drop; the spool exists).  Returns
 * the control, or NULL with a line in errs. */
struct control *control_open(struct server *srv, struct buf *errs);
/* Serve it on the loop (the queue and spool are ready).  0 or -1 (errs). */
int control_start(struct control *c, struct buf *errs) __attribute__((warn_unused_result));
void control_free(struct control **c);

#endif
