/*
 * noexe.c - an example petrel filter: refuse messages that carry a
 * Windows executable as an attachment.
 *
 * A teaching example for module writers (see api/README.md).  It shows
 * the whole shape of a module in one file:
 *
 *   - a settings table, checked by the daemon before init() runs;
 *   - init() reading the settings and keeping private state;
 *   - a per-transaction slot, allocated in one hook and freed in txn_end;
 *   - the part hook, which sees every MIME part with its decoded file name;
 *   - the eom hook, which gives the verdict with the module's own reply;
 *   - one exported descriptor, written with PETREL_MODULE().
 *
 * Build it out of the petrel tree with one line:
 *
 *     cc -shared -fPIC $(pkg-config --cflags petrel) -o noexe.so noexe.c
 *
 * install it in $(pkg-config --variable=moduledir petrel) and name it in
 * petrel.conf:
 *
 *     filters = [ "noexe" ];
 *     modules = {
 *       noexe = {
 *         reply = "554 5.7.1 We do not accept executables";   # optional
 *         extensions = [ ".exe", ".scr" ];                      # optional
 *       };
 *     };
 *
 * It logs one line per refused message, with the running count:
 *     noexe: QID: refused, attachment "setup.EXE" (3 refused so far)
 */
#include <petrel/petrel.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The module's own state: one per daemon, made in init(), freed in fini(). */
struct noexe {
	const struct petrel_host *host;   /* the daemon's function table */
	petrel_conf *self;                /* identifies us to the host (slots) */
	const char *reply;                /* owned by the configuration */
	int next;                         /* the extensions we refuse */
	const char **ext;
	unsigned long refused;            /* messages refused since start */
};

/* What we remember about one transaction: lives in the txn slot. */
struct noexe_txn {
	char first[256];                  /* the first offending file name */
	int count;                        /* offending parts in this message */
};

/* Does 'name' end in one of our extensions, ignoring case? */
static int is_refused(const struct noexe *nx, const char *name)
{
	size_t n = strlen(name);
	for (int i = 0; i < nx->next; i++) {
		size_t e = strlen(nx->ext[i]);
		if (n >= e && !strcasecmp(name + n - e, nx->ext[i]))
			return 1;
	}
	return 0;
}

/*
 * The part hook runs once per MIME part, in document order, after the
 * whole message has arrived (part 0 is the message itself).  The file
 * name is already decoded (RFC 2047/2231) to UTF-8 by the daemon, and it
 * comes from Content-Disposition's filename or Content-Type's name.
 */
static int noexe_part(void *state, petrel_txn *t, petrel_part *p)
{
	struct noexe *nx = state;
	const struct petrel_host *h = nx->host;
	const char *name = h->part_filename(p);      /* "" when there is none */

	if (!*name || !is_refused(nx, name))
		return PETREL_CONTINUE;

	/* Our slot for this transaction starts out NULL. */
	void **slot = h->txn_slot(t, nx->self);
	if (!*slot) {
		struct noexe_txn *x = calloc(1, sizeof *x);
		if (!x)                               /* cannot remember: decide now */
			return PETREL_TEMPFAIL;
		snprintf(x->first, sizeof x->first, "%s", name);
		*slot = x;
	}
	((struct noexe_txn *)*slot)->count++;
	/* We could return PETREL_REJECT right here; waiting for eom lets the
	 * other filters see every part, and lets us count them all. */
	return PETREL_CONTINUE;
}

/* End of message: every part has been seen.  Give the verdict. */
static int noexe_eom(void *state, petrel_txn *t)
{
	struct noexe *nx = state;
	const struct petrel_host *h = nx->host;
	struct noexe_txn *x = *h->txn_slot(t, nx->self);

	if (!x)
		return PETREL_CONTINUE;               /* nothing found: no objection */
	nx->refused++;
	h->log(PETREL_LOG_INFO, "noexe: %s: refused, attachment \"%s\"%s (%lu refused so far)",
	       h->txn_qid(t), x->first, x->count > 1 ? " and others" : "", nx->refused);
	/* The reply must be "5xx X.Y.Z text"; the host checks it. */
	h->txn_reply(t, "%s", nx->reply);
	return PETREL_REJECT;
}

/* The transaction ends (queued, refused, RSET or disconnect): free the slot. */
static void noexe_txn_end(void *state, petrel_txn *t)
{
	struct noexe *nx = state;
	void **slot = nx->host->txn_slot(t, nx->self);
	free(*slot);
	*slot = NULL;
}

/*
 * init() runs once, when the daemon loads us, with our configuration
 * block (modules.noexe).  The daemon has already refused unknown settings
 * and wrong types, using the table below.
 */
static int noexe_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	struct noexe *nx = calloc(1, sizeof *nx);
	if (!nx)
		return -1;
	*state = nx;                      /* fini() gets it back, even on failure */
	nx->host = host;
	nx->self = conf;
	nx->reply = "554 5.7.1 Executable attachments are not accepted here";
	host->conf_string(conf, "reply", &nx->reply);   /* untouched if absent */
	if (nx->reply[0] != '5') {
		host->conf_error(conf, "reply", "must be a permanent refusal: \"5xx X.Y.Z text\"");
		return -1;
	}

	int n = host->conf_list_count(conf, "extensions");
	nx->ext = calloc((size_t)(n ? n : 1), sizeof *nx->ext);
	if (!nx->ext)
		return -1;
	for (int i = 0; i < n; i++)
		nx->ext[nx->next++] = host->conf_list_string(conf, "extensions", i);
	if (!n)
		nx->ext[nx->next++] = ".exe";
	return 0;
}

static void noexe_fini(void *state)
{
	struct noexe *nx = state;
	if (!nx)
		return;
	nx->host->log(PETREL_LOG_INFO, "noexe: %lu messages refused", nx->refused);
	free(nx->ext);
	free(nx);
}

/* Our settings: the daemon checks names and types, and shows the help. */
static const struct petrel_setting noexe_settings[] = {
	{ .name = "reply", .type = PETREL_SET_STRING,
	  .help = "the refusal sent to the client, \"5xx X.Y.Z text\"" },
	{ .name = "extensions", .type = PETREL_SET_STRING_LIST,
	  .help = "file name endings refused, case-insensitive (default [\".exe\"])" },
	{ .type = PETREL_SET_END },
};

/* The hooks we implement; every other one is NULL and never called. */
static const struct petrel_hooks noexe_hooks = {
	.part = noexe_part,
	.eom = noexe_eom,
	.txn_end = noexe_txn_end,
};

/* The one exported object.  PETREL_MODULE() fills in the API version. */
PETREL_MODULE(
	.name = "noexe",
	.version = "1.0",
	.summary = "refuses messages with .exe attachments",
	.settings = noexe_settings,
	.init = noexe_init,
	.fini = noexe_fini,
	.filter = &noexe_hooks,
);
