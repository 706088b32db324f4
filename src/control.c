/*
 * control.c - the control socket (see control.h and doc/control-protocol.md).
 *
 * Each connection reads one request line at a time; while its reply is
 * being written it is not read (what the client sends meanwhile waits in
 * the socket).  Most replies are a few lines built at once.  The queue
 * listing is a generator: it appends messages while the output holds less
 * than CONTROL_OUT_HIGH bytes and resumes when the socket drains.  It
 * walks the queue's table from the top down and marks each message it
 * shows with the connection's bit (qmsg.ctl_listed): the table only
 * changes by appending and by moving its last entry into a freed place,
 * so walking down with the mark shows every message present throughout
 * once, and none twice.  Held messages follow, read from hold/ one
 * directory entry at a time.
 *
 * Every action runs on the loop thread through queue.c's operator
 * functions; a message in the middle of a delivery attempt is refused
 * ("busy"), never waited for.
 */
#include "control.h"
#include "config.h"
#include "ctl_json.h"
#include "generation.h"
#include "log.h"
#include "queue.h"
#include "server.h"
#include "spool.h"
#include "stats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HEADERS_MAX 65536     /* bytes of the header section `show` returns */

/* a listing marks what it showed with its connection's bit */
_Static_assert(CONTROL_MAX_CLIENTS <= 8, "qmsg.ctl_listed has a bit per connection");

enum gen { GEN_NONE, GEN_QUEUE, GEN_HOLD };

struct client {
	struct control *ctl;
	int fd;
	int slot;                 /* in ctl->clients; its bit in qmsg.ctl_listed */
	char in[CONTROL_LINE_MAX + 1];
	size_t inlen;
	struct buf out;
	struct ev_timer deadline;
	enum gen gen;
	int cursor;               /* GEN_QUEUE: next index, walking down */
	DIR *hold;                /* GEN_HOLD */
	bool busy;                /* a reply is being written: do not read */
	bool closing;             /* close once out is written */
	bool armed_write;
	int uid;                  /* the peer's (SO_PEERCRED), for the log */
};

struct control {
	struct server *srv;
	int fd;
	char *path;
	uid_t user_uid;           /* the daemon's user: allowed beside root */
	time_t started;
	struct client *clients[CONTROL_MAX_CLIENTS];
};

/* --- JSON output --- */

static void json_str(struct buf *b, const char *s)
{
	ctl_json_quote(b, s ? s : "", s ? strlen(s) : 0);
}

static void reply_ok(struct client *cl)
{
	buf_adds(&cl->out, "{\"ok\":true}\n");
}

static void reply_err(struct client *cl, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reply_err(struct client *cl, const char *code, const char *fmt, ...)
{
	struct buf msg = {0};
	va_list ap;
	va_start(ap, fmt);
	buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	buf_adds(&cl->out, "{\"ok\":false,\"error\":");
	json_str(&cl->out, msg.data);
	buf_adds(&cl->out, ",\"code\":");
	json_str(&cl->out, code);
	buf_adds(&cl->out, "}\n");
	buf_free(&msg);
}

/* --- messages as JSON --- */

static const char *dest_state(const struct qdest *d)
{
	if (d->status == Q_DELIVERED)
		return "delivered";
	if (d->status == Q_BOUNCED)
		return "bounced";
	return d->attempts || d->last_error ? "deferred" : "pending";
}

static const char *msg_state(const struct qmsg *m, bool held)
{
	if (held)
		return "held";
	if (qmsg_busy(m))
		return "active";
	return ev_timer_armed(&m->retry) ? "deferred" : "queued";
}

static void msg_json(struct buf *b, const struct qmsg *m, bool held)
{
	buf_adds(b, "{\"qid\":");
	json_str(b, m->qid);
	/* the bytes in the queue file (Received: included), as recovery counts them */
	uint64_t size = m->end > (uint64_t)m->msg_off && m->msg_off > 0 ? m->end - (uint64_t)m->msg_off
	                                                                 : m->size;
	buf_addf(b, ",\"state\":\"%s\",\"size\":%llu,\"arrival\":%lld,\"sender\":", msg_state(m, held),
	         (unsigned long long)size, (long long)m->arrival);
	json_str(b, m->sender);
	if (m->flags & (QMSG_8BITMIME | QMSG_SMTPUTF8))
		buf_addf(b, ",\"body\":\"%s\"", m->flags & QMSG_SMTPUTF8 ? "smtputf8" : "8bitmime");
	if (m->flags & (QMSG_RET_FULL | QMSG_RET_HDRS))
		buf_addf(b, ",\"ret\":\"%s\"", m->flags & QMSG_RET_FULL ? "full" : "hdrs");
	if (m->envid) {
		buf_adds(b, ",\"envid\":");
		json_str(b, m->envid);
	}
	buf_addf(b, ",\"attempts\":%d,\"recipients\":[", m->attempts);
	for (int i = 0; i < m->ndests; i++) {
		const struct qdest *d = &m->dests[i];
		buf_adds(b, i ? ",{\"address\":" : "{\"address\":");
		json_str(b, d->address);
		if (strcmp(d->orig, d->address)) {
			buf_adds(b, ",\"orig\":");
			json_str(b, d->orig);
		}
		buf_adds(b, ",\"transport\":");
		json_str(b, d->transport);
		buf_addf(b, ",\"state\":\"%s\",\"attempts\":%u", dest_state(d), (unsigned)d->attempts);
		if (d->status == Q_PENDING && d->next_try)
			buf_addf(b, ",\"next_try\":%lld", (long long)d->next_try);
		if (d->last_error) {
			buf_adds(b, ",\"last_error\":");
			json_str(b, d->last_error);
		}
		if (d->relay) {
			buf_adds(b, ",\"relay\":");
			json_str(b, d->relay);
		}
		buf_adds(b, "}");
	}
	buf_adds(b, "]}\n");
}

/* A queue id as an operator types it: a plain file name, never a path. */
static bool qid_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n >= QID_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
			return false;
	return true;
}

/* hold/QID read into a qmsg, or NULL (errno ENOENT: not held). */
static struct qmsg *read_held(struct control *ctl, const char *qid)
{
	int fd = spool_open_held(ctl->srv->spool, qid);
	if (fd < 0)
		return NULL;
	const char *why;
	struct qmsg *m = spool_read_envelope(fd, qid, &why);
	close(fd);
	if (!m) {
		log_warn("%s: hold/%s cannot be read: %s", qid, qid, why);
		errno = EINVAL;
	}
	return m;
}

/* --- the queue listing, as the socket drains --- */

static void gen_queue(struct client *cl)
{
	struct control *ctl = cl->ctl;
	struct queue *q = ctl->srv->queue;
	unsigned char bit = (unsigned char)(1u << cl->slot);
	while (cl->gen == GEN_QUEUE && cl->out.len < CONTROL_OUT_HIGH) {
		int n = queue_count(q);
		if (cl->cursor >= n)
			cl->cursor = n - 1;
		if (cl->cursor < 0) {
			char *dir = xasprintf("%s/hold", spool_dir(ctl->srv->spool));
			cl->hold = opendir(dir);
			free(dir);
			cl->gen = cl->hold ? GEN_HOLD : GEN_NONE;
			break;
		}
		struct qmsg *m = queue_at(q, cl->cursor--);
		if (m->ctl_listed & bit)
			continue;
		m->ctl_listed |= bit;
		msg_json(&cl->out, m, false);
	}
	while (cl->gen == GEN_HOLD && cl->out.len < CONTROL_OUT_HIGH) {
		struct dirent *de = readdir(cl->hold);
		if (!de) {
			closedir(cl->hold);
			cl->hold = NULL;
			cl->gen = GEN_NONE;
			break;
		}
		if (!qid_ok(de->d_name))
			continue;
		struct qmsg *m = read_held(ctl, de->d_name);
		if (m) {
			msg_json(&cl->out, m, true);
			qmsg_free(&m);
		}
	}
	if (cl->gen == GEN_NONE)
		reply_ok(cl);
}

static void start_queue(struct client *cl)
{
	struct queue *q = cl->ctl->srv->queue;
	unsigned char bit = (unsigned char)(1u << cl->slot);
	int n = queue_count(q);
	for (int i = 0; i < n; i++)
		queue_at(q, i)->ctl_listed &= (unsigned char)~bit;
	cl->cursor = n - 1;
	cl->gen = GEN_QUEUE;
	gen_queue(cl);
}

/* --- the other requests --- */

/* The header section of the message at off in fd, up to HEADERS_MAX. */
static void show_headers(struct buf *b, int fd, off_t off)
{
	char *h = xmalloc(HEADERS_MAX);
	ssize_t n = pread(fd, h, HEADERS_MAX, off);
	size_t len = n > 0 ? (size_t)n : 0, end = len;
	for (size_t i = 0; i + 1 < len; i++) {
		if (h[i] == '\n' && (h[i + 1] == '\n' || (h[i + 1] == '\r' && i + 2 < len && h[i + 2] == '\n'))) {
			end = i + 1;
			break;
		}
	}
	buf_adds(b, "{\"headers\":");
	ctl_json_quote(b, h, end);
	buf_addf(b, ",\"truncated\":%s}\n", end == len && len == HEADERS_MAX ? "true" : "false");
	free(h);
}

static void do_show(struct client *cl, char **argv, int argc)
{
	struct control *ctl = cl->ctl;
	if (argc != 1 || !qid_ok(argv[0])) {
		reply_err(cl, "usage", "usage: show QID");
		return;
	}
	struct qmsg *m = queue_find(ctl->srv->queue, argv[0]);
	struct qmsg *held = m ? NULL : read_held(ctl, argv[0]);
	if (!m && !held) {
		reply_err(cl, "unknown_qid", "%s: no such message in the queue", argv[0]);
		return;
	}
	msg_json(&cl->out, m ? m : held, held != NULL);
	int fd;
	if (held) {
		fd = spool_open_held(ctl->srv->spool, argv[0]);
	} else {
		char path[4096];
		fd = spool_path(ctl->srv->spool, m, path, sizeof path) == 0 ?
		     open(path, O_RDONLY | O_CLOEXEC) : -1;
	}
	if (fd >= 0) {
		show_headers(&cl->out, fd, (m ? m : held)->msg_off);
		close(fd);
	}
	qmsg_free(&held);
	reply_ok(cl);
}

/* hold, release, delete, flush on the queue ids given: a line for each,
 * then ok when every one succeeded, else the first failure's code. */
enum act { ACT_HOLD, ACT_RELEASE, ACT_DELETE, ACT_FLUSH };
static const char *const act_done[] = {
	[ACT_HOLD] = "held", [ACT_RELEASE] = "released", [ACT_DELETE] = "deleted",
	[ACT_FLUSH] = "flushed",
};

static void act_line(struct client *cl, const char *qid, const char *result, const char *code,
                     const char *error)
{
	buf_adds(&cl->out, "{\"qid\":");
	json_str(&cl->out, qid);
	buf_addf(&cl->out, ",\"result\":\"%s\"", result);
	if (code) {
		buf_addf(&cl->out, ",\"code\":\"%s\",\"error\":", code);
		json_str(&cl->out, error);
	}
	buf_adds(&cl->out, "}\n");
}

/* One action on one queue id; returns the failure's code or NULL. */
static const char *act_one(struct client *cl, enum act a, const char *qid)
{
	struct control *ctl = cl->ctl;
	struct queue *q = ctl->srv->queue;
	const char *err = NULL, *code = NULL;
	struct qmsg *m = queue_find(q, qid);
	struct stat st;
	char *hp = xasprintf("%s/hold/%s", spool_dir(ctl->srv->spool), qid);
	bool held = !m && lstat(hp, &st) == 0 && S_ISREG(st.st_mode);
	free(hp);
	if (!m && !held) {
		code = "unknown_qid";
		err = "no such message in the queue";
	} else if (a == ACT_HOLD) {
		if (held) {
			code = "held";
			err = "already held";
		} else if (queue_hold_msg(q, m, &err) < 0) {
			code = qmsg_busy(m) ? "busy" : "internal";
		}
	} else if (a == ACT_RELEASE) {
		/* durable here; taken into the queue once the reply is out
		 * (do_act): a message that crashes the daemon again must not
		 * take its operator's answer with it */
		if (!held) {
			code = "not_held";
			err = "is not held";
		} else if (spool_release(ctl->srv->spool, qid, &err) < 0) {
			code = "internal";
		}
	} else if (a == ACT_DELETE) {
		if (held) {
			if (spool_delete_held(ctl->srv->spool, qid, &err) < 0)
				code = "internal";
			else
				log_info("%s: removed from hold/ by the operator (petrelctl delete), no report sent",
				         qid);
		} else if (queue_delete_msg(q, m, &err) < 0) {
			code = qmsg_busy(m) ? "busy" : "internal";
		}
	} else if (a == ACT_FLUSH) {
		if (held) {
			code = "held";
			err = "is held: release it first";
		} else {
			queue_flush_msg(q, m);
		}
	}
	act_line(cl, qid, code ? "failed" : act_done[a], code, err);
	return code;
}

/* delete ALL: every message not in flight, queued and held. */
static void delete_all(struct client *cl)
{
	struct control *ctl = cl->ctl;
	struct queue *q = ctl->srv->queue;
	int deleted = 0, busy = 0, failed = 0;
	for (int i = queue_count(q) - 1; i >= 0; i--) {
		if (i >= queue_count(q))
			continue;
		struct qmsg *m = queue_at(q, i);
		const char *err;
		if (qmsg_busy(m))
			busy++;
		else if (queue_delete_msg(q, m, &err) < 0)
			failed++;
		else
			deleted++;
	}
	char *dir = xasprintf("%s/hold", spool_dir(ctl->srv->spool));
	DIR *d = opendir(dir);
	free(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		const char *err;
		if (!qid_ok(de->d_name))
			continue;
		if (spool_delete_held(ctl->srv->spool, de->d_name, &err) < 0) {
			failed++;
		} else {
			log_info("%s: removed from hold/ by the operator (petrelctl delete ALL), no report sent",
			         de->d_name);
			deleted++;
		}
	}
	if (d)
		closedir(d);
	buf_addf(&cl->out, "{\"deleted\":%d,\"busy\":%d,\"failed\":%d}\n", deleted, busy, failed);
	if (busy || failed)
		reply_err(cl, busy ? "busy" : "internal", "%d message(s) not deleted (%d in a delivery "
		          "attempt; try again)", busy + failed, busy);
	else
		reply_ok(cl);
}

static void do_act(struct client *cl, enum act a, char **argv, int argc)
{
	struct control *ctl = cl->ctl;
	if (a == ACT_DELETE && argc == 1 && !strcmp(argv[0], "ALL")) {
		delete_all(cl);
		return;
	}
	if (a == ACT_FLUSH && argc == 0) {
		queue_rescan(ctl->srv->queue);
		reply_ok(cl);
		return;
	}
	if (argc == 0) {
		reply_err(cl, "usage", "which queue id?");
		return;
	}
	for (int i = 0; i < argc; i++) {
		if (!qid_ok(argv[i])) {
			reply_err(cl, "usage", "%s: not a queue id", argv[i]);
			return;
		}
	}
	if (a == ACT_FLUSH)
		queue_transports_flush(ctl->srv->queue);
	const char *first = NULL;
	int nfailed = 0;
	bool *done = xcalloc((size_t)argc, sizeof *done);
	for (int i = 0; i < argc; i++) {
		const char *code = act_one(cl, a, argv[i]);
		done[i] = !code;
		if (code && !nfailed++)
			first = code;
	}
	if (first)
		reply_err(cl, first, "%d of %d failed", nfailed, argc);
	else
		reply_ok(cl);
	if (a == ACT_RELEASE) {
		/* the answer first (best effort, it is small), then the attempt */
		ssize_t n = send(cl->fd, cl->out.data, cl->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0)
			buf_consume(&cl->out, (size_t)n);
		for (int i = 0; i < argc; i++) {
			const char *err;
			if (done[i] && queue_take_released(ctl->srv->queue, argv[i], &err) < 0)
				log_error("%s: released, but not taken into the queue: %s", argv[i], err);
		}
	}
	free(done);
}

static void do_stats(struct client *cl)
{
	struct control *ctl = cl->ctl;
	struct queue *q = ctl->srv->queue;
	struct stats_snapshot *s = xcalloc(1, sizeof *s);
	stats_snapshot(s);
	struct buf *b = &cl->out;
	time_t start = s->start_unix ? (time_t)s->start_unix : ctl->started;
	uint64_t conns = 0, recv = 0, rej[STATS_REJECT_N] = {0}, out[STATS_OUTCOME_N] = {0};
	for (int i = 0; i <= STATS_MAX_LISTENERS; i++) {
		conns += s->connections[i];
		recv += s->received[i];
		for (int k = 0; k < STATS_REJECT_N; k++)
			rej[k] += s->rejected[i][k];
	}
	for (int i = 0; i <= STATS_MAX_TRANSPORTS; i++)
		for (int k = 0; k < STATS_OUTCOME_N; k++)
			out[k] += s->outcome[i][k];
	int nq = queue_count(q), active = 0, deferred = 0, held = 0;
	for (int i = 0; i < nq; i++) {
		struct qmsg *m = queue_at(q, i);
		active += qmsg_busy(m);
		deferred += !qmsg_busy(m) && ev_timer_armed(&m->retry);
	}
	char *dir = xasprintf("%s/hold", spool_dir(ctl->srv->spool));
	DIR *d = opendir(dir);
	free(dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		held += qid_ok(de->d_name);
	if (d)
		closedir(d);
	buf_addf(b, "{\"start\":%lld,\"uptime\":%lld,\"sessions_open\":%lld,\"connections\":%llu,"
	         "\"received\":%llu,\"accepted\":%llu,\"rejected\":{", (long long)start,
	         (long long)(time(NULL) - start), (long long)s->sessions_open,
	         (unsigned long long)conns, (unsigned long long)recv,
	         (unsigned long long)ctl->srv->counter_accepted);
	for (int k = 0; k < STATS_REJECT_N; k++)
		buf_addf(b, "%s\"%s\":%llu", k ? "," : "", stats_reject_reason_name(k),
		         (unsigned long long)rej[k]);
	buf_addf(b, "},\"delivered\":%llu,\"deferred\":%llu,\"bounced\":%llu,\"bytes_in\":%llu,"
	         "\"bytes_out\":%llu,\"tls\":{\"ok\":%llu,\"failed\":%llu},"
	         "\"auth\":{\"ok\":%llu,\"failed\":%llu},"
	         "\"queue\":{\"messages\":%d,\"active\":%d,\"deferred\":%d,\"held\":%d},\"listeners\":[",
	         (unsigned long long)out[STATS_DELIVERED], (unsigned long long)out[STATS_DEFERRED],
	         (unsigned long long)out[STATS_BOUNCED], (unsigned long long)s->bytes_in,
	         (unsigned long long)s->bytes_out, (unsigned long long)s->tls_ok,
	         (unsigned long long)s->tls_failed, (unsigned long long)s->auth_ok,
	         (unsigned long long)s->auth_failed, nq, active, deferred, held);
	struct config *cfg = ctl->srv->cfg;
	for (int i = 0; i < cfg->nlisteners && i < STATS_MAX_LISTENERS; i++) {
		uint64_t r = 0;
		for (int k = 0; k < STATS_REJECT_N; k++)
			r += s->rejected[i][k];
		buf_adds(b, i ? ",{\"listen\":" : "{\"listen\":");
		json_str(b, cfg->listeners[i].listen);
		buf_addf(b, ",\"connections\":%llu,\"received\":%llu,\"rejected\":%llu}",
		         (unsigned long long)s->connections[i], (unsigned long long)s->received[i],
		         (unsigned long long)r);
	}
	buf_adds(b, "],\"transports\":[");
	for (int i = 0, n = 0; i <= STATS_MAX_TRANSPORTS; i++) {
		uint64_t any = 0;
		for (int k = 0; k < STATS_OUTCOME_N; k++)
			any |= s->outcome[i][k];
		if (!any)
			continue;       /* a slot nothing was delivered through */
		buf_adds(b, n++ ? ",{\"name\":" : "{\"name\":");
		json_str(b, s->transport[i]);
		buf_addf(b, ",\"delivered\":%llu,\"deferred\":%llu,\"bounced\":%llu}",
		         (unsigned long long)s->outcome[i][STATS_DELIVERED],
		         (unsigned long long)s->outcome[i][STATS_DEFERRED],
		         (unsigned long long)s->outcome[i][STATS_BOUNCED]);
	}
	buf_adds(b, "]}\n");
	free(s);
	reply_ok(cl);
}

/* reload: the whole configuration again (generation.c).  Each line of
 * the result is one reply line: {"note":...} for a setting that needs a
 * restart, {"error":...} for a "FILE:LINE: setting: reason" line. */
static void do_reload(struct client *cl)
{
	struct server *srv = cl->ctl->srv;
	struct buf out = {0};
	char who[64];
	snprintf(who, sizeof who, "petrelctl reload (uid %d)", (int)cl->uid);
	int r = server_reload(srv, who, &out);
	int nlines = 0;
	for (char *p = out.data, *nl; p && *p; p = nl ? nl + 1 : p + strlen(p)) {
		nl = strchr(p, '\n');
		if (nl)
			*nl = 0;
		buf_adds(&cl->out, r < 0 ? "{\"error\":" : "{\"note\":");
		json_str(&cl->out, p);
		buf_adds(&cl->out, "}\n");
		nlines++;
		if (!nl)
			break;
	}
	buf_free(&out);
	if (r < 0) {
		reply_err(cl, "config", "configuration refused (%d line(s)); generation %lu (%s) stays",
		          nlines, srv->gen->id, srv->cfg->file);
		return;
	}
	buf_addf(&cl->out, "{\"generation\":%lu,\"file\":", srv->gen->id);
	json_str(&cl->out, srv->cfg->file);
	buf_adds(&cl->out, "}\n");
	reply_ok(cl);
}

static void handle(struct client *cl, char *line)
{
	char *argv[CONTROL_LINE_MAX / 2 + 1], *save;
	int argc = 0;
	for (char *tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
		argv[argc++] = tok;
	if (!argc) {
		reply_err(cl, "usage", "empty request");
		return;
	}
	const char *cmd = argv[0];
	char **args = argv + 1;
	int n = argc - 1;
	if (!strcmp(cmd, "queue") && n == 0)
		start_queue(cl);
	else if (!strcmp(cmd, "show"))
		do_show(cl, args, n);
	else if (!strcmp(cmd, "hold"))
		do_act(cl, ACT_HOLD, args, n);
	else if (!strcmp(cmd, "release"))
		do_act(cl, ACT_RELEASE, args, n);
	else if (!strcmp(cmd, "delete"))
		do_act(cl, ACT_DELETE, args, n);
	else if (!strcmp(cmd, "flush"))
		do_act(cl, ACT_FLUSH, args, n);
	else if (!strcmp(cmd, "requeue") && n == 0) {
		queue_requeue(cl->ctl->srv->queue);
		reply_ok(cl);
	} else if (!strcmp(cmd, "stats") && n == 0)
		do_stats(cl);
	else if (!strcmp(cmd, "reload") && n == 0)
		do_reload(cl);
	else
		reply_err(cl, "usage", "unknown request (queue, show, hold, release, delete, flush, "
		          "requeue, stats, reload)");
}

/* --- connections --- */

static void client_close(struct client **clp)
{
	struct client *cl = *clp;
	struct control *ctl = cl->ctl;
	ev_timer_stop(ctl->srv->loop, &cl->deadline);
	ev_fd_del(ctl->srv->loop, cl->fd);
	if (cl->closing) {
		/* input left unread would turn the close into a reset that can
		 * take the error reply with it: read a bounded amount first */
		char junk[4096];
		for (int i = 0; i < 16 && read(cl->fd, junk, sizeof junk) > 0; i++)
			;
		shutdown(cl->fd, SHUT_WR);
	}
	close(cl->fd);
	if (cl->hold)
		closedir(cl->hold);
	buf_free(&cl->out);
	ctl->clients[cl->slot] = NULL;
	free(cl);
	*clp = NULL;
}

static void on_client(struct ev_loop *loop, int fd, int mask, void *arg);

static void watch(struct client *cl)
{
	const char *err;
	int mask = cl->out.len ? EV_WRITE : EV_READ;
	if (ev_fd_set(cl->ctl->srv->loop, cl->fd, mask, on_client, cl, &err) < 0) {
		log_error("control: %s", err);
		client_close(&cl);
	}
}

/* The next complete request in cl->in, if any: handled, the rest kept. */
static void next_request(struct client *cl)
{
	char *nl = memchr(cl->in, '\n', cl->inlen);
	if (!nl) {
		if (cl->inlen >= CONTROL_LINE_MAX) {
			reply_err(cl, "too_long", "request line longer than %d bytes", CONTROL_LINE_MAX);
			cl->closing = true;
			cl->busy = true;
		}
		return;
	}
	*nl = 0;
	size_t used = (size_t)(nl - cl->in) + 1;
	bool nul = memchr(cl->in, 0, used - 1) != NULL;
	if (nl > cl->in && nl[-1] == '\r')
		nl[-1] = 0;
	cl->busy = true;
	if (nul)
		reply_err(cl, "usage", "a NUL byte in the request");
	else
		handle(cl, cl->in);
	memmove(cl->in, cl->in + used, cl->inlen - used);
	cl->inlen -= used;
}

/* Returns false when cl was closed. */
static bool flush_out(struct client *cl)
{
	while (cl->out.len) {
		ssize_t n = send(cl->fd, cl->out.data, cl->out.len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n <= 0) {
			client_close(&cl);
			return false;
		}
		buf_consume(&cl->out, (size_t)n);
		ev_timer_start(cl->ctl->srv->loop, &cl->deadline, CONTROL_TIMEOUT_MS);  /* progress */
		if (cl->gen != GEN_NONE && cl->out.len < CONTROL_OUT_HIGH / 2)
			gen_queue(cl);
	}
	return true;
}

static void on_client(struct ev_loop *loop, int fd, int mask, void *arg)
{
	(void)loop;
	(void)mask;
	struct client *cl = arg;
	for (;;) {
		if (cl->busy) {
			if (!flush_out(cl))
				return;
			if (cl->out.len || cl->gen != GEN_NONE)
				break;
			if (cl->closing) {
				client_close(&cl);
				return;
			}
			cl->busy = false;
			next_request(cl);
			if (cl->busy)
				continue;
		}
		ssize_t n = read(fd, cl->in + cl->inlen, CONTROL_LINE_MAX - cl->inlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			client_close(&cl);
			return;
		}
		cl->inlen += (size_t)n;
		next_request(cl);
		if (!cl->busy)
			continue;
	}
	watch(cl);
}

static void on_deadline(struct ev_loop *loop, void *arg)
{
	(void)loop;
	struct client *cl = arg;
	log_warn("control: a client took more than %d ms; closed", CONTROL_TIMEOUT_MS);
	client_close(&cl);
}

/* Who may use the socket: root and the daemon's user. */
static bool peer_allowed(struct control *ctl, int fd, struct ucred *uc)
{
	socklen_t len = sizeof *uc;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, uc, &len) < 0)
		return false;
	return uc->uid == 0 || uc->uid == ctl->user_uid;
}

/* Refused before any request: one error line, best effort, and closed. */
static void refuse(int fd, const char *code, const char *text)
{
	struct buf b = {0};
	buf_addf(&b, "{\"ok\":false,\"error\":\"%s\",\"code\":\"%s\"}\n", text, code);
	(void)!send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	buf_free(&b);
	close(fd);
}

static void on_accept(struct ev_loop *loop, int lfd, int mask, void *arg)
{
	(void)loop;
	(void)mask;
	struct control *ctl = arg;
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("control: accept: %m");
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		struct ucred uc = {0};
		if (!peer_allowed(ctl, fd, &uc)) {
			log_warn("control: refused uid %d (pid %d): only root and uid %d may use %s",
			         (int)uc.uid, (int)uc.pid, (int)ctl->user_uid, ctl->path);
			refuse(fd, "permission", "permission denied: only root and the petrel user may use "
			       "the control socket");
			continue;
		}
		int slot = -1;
		for (int i = 0; i < CONTROL_MAX_CLIENTS && slot < 0; i++)
			if (!ctl->clients[i])
				slot = i;
		if (slot < 0) {
			refuse(fd, "too_many", "too many control connections; try again");
			continue;
		}
		struct client *cl = xcalloc(1, sizeof *cl);
		cl->uid = (int)uc.uid;
		cl->ctl = ctl;
		cl->fd = fd;
		cl->slot = slot;
		ctl->clients[slot] = cl;
		ev_timer_init(&cl->deadline, on_deadline, cl);
		ev_timer_start(ctl->srv->loop, &cl->deadline, CONTROL_TIMEOUT_MS);
		watch(cl);
	}
}

/* --- the socket --- */

struct control *control_open(struct server *srv, struct buf *errs)
{
	struct config *cfg = srv->cfg;
	const char *path = cfg->control_path;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sun.sun_path) {
		buf_addf(errs, "control_socket %s: path too long\n", path);
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path));
	struct passwd *pw = cfg->user ? getpwnam(cfg->user) : NULL;
	bool root = geteuid() == 0;
	uid_t user_uid = root && pw ? pw->pw_uid : geteuid();
	/* A socket left by an earlier run goes; one a daemon still answers
	 * on, or anything else there, is refused. */
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			buf_addf(errs, "control_socket %s: exists and is not a socket\n", path);
			return NULL;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0) {
			struct ucred uc = {0};
			socklen_t len = sizeof uc;
			(void)getsockopt(probe, SOL_SOCKET, SO_PEERCRED, &uc, &len);
			buf_addf(errs, "control_socket %s: the spool is in use by petreld pid %d (it "
			         "answers on this socket)\n", path, (int)uc.pid);
			close(probe);
			return NULL;
		}
		if (probe >= 0)
			close(probe);
		if (unlink(path) < 0) {
			buf_addf(errs, "control_socket %s: cannot remove the old socket: %s\n", path,
			         strerror(errno));
			return NULL;
		}
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		buf_addf(errs, "control_socket: socket: %s\n", strerror(errno));
		return NULL;
	}
	/* made 0660 from the start (no window with a wider mode) */
	mode_t old = umask(0117);
	int r = bind(fd, (struct sockaddr *)&sun, sizeof sun);
	umask(old);
	/* lchown: the name is in a directory the user can write; a link put
	 * there in a race is changed itself, never what it points to */
	if (r < 0 || (root && lchown(path, 0, pw ? pw->pw_gid : 0) < 0) || listen(fd, 16) < 0) {
		buf_addf(errs, "control_socket %s: %s\n", path, strerror(errno));
		close(fd);
		return NULL;
	}
	struct control *c = xcalloc(1, sizeof *c);
	c->srv = srv;
	c->fd = fd;
	c->path = xstrdup(path);
	c->user_uid = user_uid;
	c->started = time(NULL);
	return c;
}

int control_start(struct control *c, struct buf *errs)
{
	const char *err;
	if (ev_fd_set(c->srv->loop, c->fd, EV_READ, on_accept, c, &err) < 0) {
		buf_addf(errs, "control_socket %s: %s\n", c->path, err);
		return -1;
	}
	return 0;
}

void control_free(struct control **cp)
{
	struct control *c = *cp;
	if (!c)
		return;
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i])
			client_close(&c->clients[i]);
	ev_fd_del(c->srv->loop, c->fd);
	close(c->fd);
	(void)unlink(c->path);
	free(c->path);
	free(c);
	*cp = NULL;
}
