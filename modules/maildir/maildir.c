/*
 * maildir.c - the "maildir" transport (MDA stage).
 *
 * Delivery follows the maildir specification: write tmp/NAME, fsync it,
 * rename it to new/NAME, fsync new/.  NAME is
 * "SECONDS.MMICROSECONDSPpidQcounter.HOST", unique per host even at
 * thousands of deliveries a second and across threads; tmp/ is opened with
 * O_EXCL so a collision can never overwrite mail.  The file starts with
 * Return-Path and Delivered-To; lines end in LF (the maildir convention
 * that Dovecot reads), converted from the CRLF of SMTP.
 *
 * Group commit of the directory sync: deliveries into the same new/ at
 * the same moment share one fsync of it.  A delivery is covered only by a
 * sync that began after its rename; it waits for one, or runs it.
 *
 * 'root' is a template: %d the domain, %u the local part (lower-cased),
 * %% a percent sign.  Local parts that could leave the root ('/', a
 * leading '.') are refused permanently.  A maildir (and any directory
 * above it) made for a delivery is synced into its parent before the
 * delivery is reported done (ensure_maildir).  Every other failure (permissions,
 * disk full) is temporary: the message stays queued.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <petrel/petrel.h>

#include "maildir_copy.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define DIRSYNC_SLOTS 64

/* One directory's sync in progress, shared by concurrent deliveries. */
struct dirsync {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char path[PATH_MAX];
	unsigned long long requested;  /* renames that need a sync */
	unsigned long long done;       /* renames a finished sync covered */
	int running;
	int users;                     /* threads inside for this path */
};

struct maildir {
	const struct petrel_host *host;
	struct dirsync slots[DIRSYNC_SLOTS];
	char *root;             /* absolute template */
	char hostname[128];     /* with '/' and ':' escaped, as the spec asks */
	atomic_uint counter;
};

static int md_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	struct maildir *md = calloc(1, sizeof *md);
	if (!md)
		return -1;
	md->host = host;
	*state = md;
	const char *root = "Maildir/%d/%u";
	for (int i = 0; i < DIRSYNC_SLOTS; i++) {
		pthread_mutex_init(&md->slots[i].lock, NULL);
		pthread_cond_init(&md->slots[i].cond, NULL);
	}
	host->conf_string(conf, "root", &root);
	if (!strstr(root, "%u")) {
		host->conf_error(conf, "root", "'%s' must contain %%u (the local part)", root);
		return -1;
	}
	if (root[0] == '/') {
		md->root = strdup(root);
	} else {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof cwd)) {
			host->conf_error(conf, "root", "relative root and no current directory");
			return -1;
		}
		if (asprintf(&md->root, "%s/%s", cwd, root) < 0)
			return -1;
	}
	char hn[100];
	if (gethostname(hn, sizeof hn) < 0)
		strcpy(hn, "localhost");
	hn[sizeof hn - 1] = 0;
	size_t k = 0;
	for (const char *p = hn; *p && k + 5 < sizeof md->hostname; p++) {
		if (*p == '/')
			k += (size_t)snprintf(md->hostname + k, 5, "\\057");
		else if (*p == ':')
			k += (size_t)snprintf(md->hostname + k, 5, "\\072");
		else
			md->hostname[k++] = *p;
	}
	md->hostname[k] = 0;
	return 0;
}

static void md_fini(void *state)
{
	struct maildir *md = state;
	if (md) {
		for (int i = 0; i < DIRSYNC_SLOTS; i++) {
			pthread_mutex_destroy(&md->slots[i].lock);
			pthread_cond_destroy(&md->slots[i].cond);
		}
		free(md->root);
		free(md);
	}
}

static int safe_component(const char *s)
{
	if (!*s || s[0] == '.')
		return 0;
	for (; *s; s++)
		if (*s == '/' || (unsigned char)*s < 0x20)
			return 0;
	return 1;
}

/* Expand the root template; returns 0 or -1 (name too long). */
static int expand(const struct maildir *md, const char *local, const char *domain,
                  char *out, size_t size)
{
	size_t k = 0;
	for (const char *p = md->root; *p; p++) {
		const char *ins = NULL;
		char one[2] = { *p, 0 };
		if (*p == '%' && p[1]) {
			p++;
			ins = *p == 'u' ? local : *p == 'd' ? domain : *p == '%' ? "%" : NULL;
			if (!ins) {
				one[0] = '%';
				ins = one;
				p--;
			}
		} else {
			ins = one;
		}
		size_t n = strlen(ins);
		if (k + n + 1 > size)
			return -1;
		memcpy(out + k, ins, n);
		k += n;
	}
	out[k] = 0;
	return 0;
}

static int fsync_dir(const char *dir);

/* fsync the directory holding path (the entry of a directory just made). */
static int fsync_parent(char *path)
{
	char *slash = strrchr(path, '/');
	if (!slash)
		return fsync_dir(".");
	if (slash == path)
		return fsync_dir("/");
	*slash = 0;
	int r = fsync_dir(path);
	*slash = '/';
	return r;
}

/* mkdir -p, and every directory made here is synced into its parent
 * before the next is made, so none can vanish in a crash after a
 * delivery into it was reported done. */
static int mkdirs(char *path)
{
	for (char *s = path + 1;; s++) {
		if (*s && *s != '/')
			continue;
		char c = *s;
		*s = 0;
		int r = mkdir(path, 0700);
		if (r == 0)
			r = fsync_parent(path);
		else if (errno == EEXIST)
			r = 0;
		*s = c;
		if (r < 0)
			return -1;
		if (!c)
			return 0;
	}
}

/*
 * Make dir a maildir.  "cur" is made last, after tmp/ and new/ and every
 * directory above them are synced into their parents, and is what the
 * quick check looks for: a delivery that finds it can rely on the rest
 * being on disk.  Creation is serialised in the process (it is rare), so
 * a delivery never passes a maildir another thread is still syncing.
 */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

static int ensure_maildir(const char *dir)
{
	char p[PATH_MAX];
	struct stat st;
	if (snprintf(p, sizeof p, "%s/cur", dir) >= (int)sizeof p)
		return -1;
	if (stat(p, &st) == 0)
		return 0;
	static const char *subs[] = { "tmp", "new", "cur" };
	int r = 0;
	pthread_mutex_lock(&create_lock);
	for (int i = 0; r == 0 && i < 3; i++) {
		if (snprintf(p, sizeof p, "%s/%s", dir, subs[i]) >= (int)sizeof p) {
			errno = ENAMETOOLONG;
			r = -1;
		} else {
			r = mkdirs(p);
		}
	}
	int e = errno;
	pthread_mutex_unlock(&create_lock);
	errno = e;
	return r;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Copy the message through maildir_copy (CRLF -> LF).  Returns 0 or -1
 * (errno set). */
static int copy_message(const struct petrel_host *host, petrel_delivery *d, int fd)
{
	char in[65536], out[MAILDIR_COPY_OUT_MAX(sizeof in)];
	struct maildir_copy c;
	const char *err;
	size_t k;
	maildir_copy_init(&c);
	for (;;) {
		ssize_t n = host->delivery_read(d, in, sizeof in);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		if (maildir_copy_block(&c, in, (size_t)n, out, sizeof out, &k, &err) < 0) {
			errno = EINVAL;     /* cannot happen: out is sized for in */
			return -1;
		}
		if (write_all(fd, out, k) < 0)
			return -1;
	}
	if (maildir_copy_end(&c, out, sizeof out, &k, &err) < 0) {
		errno = EINVAL;
		return -1;
	}
	return write_all(fd, out, k);
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

static unsigned hash_path(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % DIRSYNC_SLOTS;
}

/* Make the rename just done in dir durable, sharing the sync with other
 * deliveries into the same directory.  Returns 0 or -1 (errno set). */
static int sync_new_dir(struct maildir *md, const char *dir)
{
	struct dirsync *ds = &md->slots[hash_path(dir)];
	if (strlen(dir) >= sizeof ds->path)
		return fsync_dir(dir);     /* cannot be named exactly: no sharing */
	pthread_mutex_lock(&ds->lock);
	if (strcmp(ds->path, dir) != 0) {
		if (ds->users) {
			/* another directory holds the slot: sync on our own (its
			 * counters must never be read as covering this one) */
			pthread_mutex_unlock(&ds->lock);
			return fsync_dir(dir);
		}
		snprintf(ds->path, sizeof ds->path, "%s", dir);
		ds->requested = ds->done = 0;
	}
	ds->users++;
	unsigned long long want = ++ds->requested;
	int r = 0;
	while (ds->done < want) {
		if (ds->running) {
			pthread_cond_wait(&ds->cond, &ds->lock);
			continue;
		}
		ds->running = 1;
		unsigned long long covers = ds->requested;
		pthread_mutex_unlock(&ds->lock);
		r = fsync_dir(dir);
		int e = errno;
		pthread_mutex_lock(&ds->lock);
		ds->running = 0;
		if (r == 0)
			ds->done = covers;
		pthread_cond_broadcast(&ds->cond);
		if (r < 0) {
			ds->users--;
			pthread_mutex_unlock(&ds->lock);
			errno = e;
			return -1;
		}
	}
	ds->users--;
	pthread_mutex_unlock(&ds->lock);
	return 0;
}

static int md_deliver(void *state, petrel_delivery *d)
{
	struct maildir *md = state;
	const struct petrel_host *host = md->host;
	const char *rlocal = host->delivery_local(d), *domain = host->delivery_domain(d);
	char local[256];
	size_t i;
	for (i = 0; rlocal[i] && i < sizeof local - 1; i++)
		local[i] = (char)tolower((unsigned char)rlocal[i]);
	local[i] = 0;
	if (!safe_component(local) || !safe_component(domain)) {
		host->delivery_status(d, "mailbox name '%s@%s' is not usable as a maildir", local, domain);
		return PETREL_BOUNCE;
	}
	char dir[PATH_MAX - 16], tmp[PATH_MAX + 300], new[PATH_MAX + 300];
	if (expand(md, local, domain, dir, sizeof dir) < 0) {
		host->delivery_status(d, "maildir path too long");
		return PETREL_BOUNCE;
	}
	if (ensure_maildir(dir) < 0) {
		host->delivery_status(d, "cannot create maildir %s: %s", dir, strerror(errno));
		return PETREL_DEFER;
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	unsigned q = atomic_fetch_add(&md->counter, 1);
	char name[256];
	snprintf(name, sizeof name, "%lld.M%06ldP%dQ%u.%s", (long long)tv.tv_sec, (long)tv.tv_usec,
	         (int)getpid(), q, md->hostname);
	snprintf(tmp, sizeof tmp, "%s/tmp/%s", dir, name);
	snprintf(new, sizeof new, "%s/new/%s", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		host->delivery_status(d, "cannot create %s: %s", tmp, strerror(errno));
		return PETREL_DEFER;
	}
	char head[1200];
	int hn = snprintf(head, sizeof head, "Return-Path: <%s>\nDelivered-To: %s\n",
	                  host->delivery_sender(d), host->delivery_recipient(d));
	const char *what = "write";
	if (hn < 0 || (size_t)hn >= sizeof head || write_all(fd, head, (size_t)hn) < 0 ||
	    copy_message(host, d, fd) < 0 || (what = "fsync", fsync(fd) < 0)) {
		int e = errno;
		close(fd);
		unlink(tmp);
		host->delivery_status(d, "maildir %s %s: %s", what, tmp, strerror(e));
		return PETREL_DEFER;
	}
	if (close(fd) < 0 || rename(tmp, new) < 0) {
		int e = errno;
		unlink(tmp);
		host->delivery_status(d, "maildir rename to %s: %s", new, strerror(e));
		return PETREL_DEFER;
	}
	char newdir[PATH_MAX + 16];
	snprintf(newdir, sizeof newdir, "%s/new", dir);
	if (sync_new_dir(md, newdir) < 0) {
		int e = errno;
		/* The file is in new/ but may not survive a crash: deliver again
		 * later rather than risk losing it (a duplicate at worst). */
		unlink(new);
		host->delivery_status(d, "maildir sync %s: %s", newdir, strerror(e));
		return PETREL_DEFER;
	}
	host->delivery_status(d, "delivered to maildir %s", dir);
	return PETREL_DELIVERED;
}

static const struct petrel_setting md_settings[] = {
	{ .name = "root", .type = PETREL_SET_STRING,
	  .help = "maildir path template: %d domain, %u local part (default Maildir/%d/%u)" },
	{ .type = PETREL_SET_END },
};

/* API 1.2 check(), at RCPT: an address whose mailbox name cannot be a
 * maildir (a '/', a leading '.', a control byte, too long) is refused
 * there, so no bounce goes later to a sender who may be forged. */
static int md_check(void *state, const char *address, const char *rlocal, const char *domain,
                    char *reply, size_t size)
{
	struct maildir *md = state;
	char local[256], dir[PATH_MAX - 16];
	size_t i;
	for (i = 0; rlocal[i] && i < sizeof local - 1; i++)
		local[i] = (char)tolower((unsigned char)rlocal[i]);
	local[i] = 0;
	if (rlocal[i] || !safe_component(local) || !safe_component(domain) ||
	    expand(md, local, domain, dir, sizeof dir) < 0) {
		snprintf(reply, size, "550 5.1.1 <%s>: Recipient address rejected: "
		         "mailbox name not usable as a maildir", address);
		return PETREL_CHECK_REFUSE;
	}
	return PETREL_CHECK_OK;
}

static const struct petrel_transport_ops md_ops = { .deliver = md_deliver, .check = md_check };

PETREL_MODULE(
	.name = "maildir",
	.version = "1.0",
	.summary = "delivers into maildirs (tmp, fsync, rename to new, fsync)",
	.settings = md_settings,
	.init = md_init,
	.fini = md_fini,
	.transport = &md_ops,
);
