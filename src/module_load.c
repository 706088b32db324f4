/*
 * module_load.c - load, check and configure modules (see module_load.h).
 *
 * Modules are loaded as root, before the drop: a module file is code run
 * as root.  So the loader opens only a file it found itself, in a
 * directory of module_path (or the path named), never through libltdl's
 * search (LD_LIBRARY_PATH, the system directories), and only when no one
 * but root or the user we run as could have written it: the file must be
 * a regular file owned by one of them and not writable by group or
 * others, and so must every directory above it (a sticky directory such
 * as /tmp may be writable by others: no one can rename what is not theirs
 * in it).
 */
#include "module_load.h"
#include "log.h"
#include "mem.h"
#include "server.h"

#include <errno.h>
#include <ltdl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int ltdl_ready;
static int nlive;           /* instances loaded, in all registries: libltdl ends at 0 */

/* --- slot numbers: unique among live instances, the lowest free --- */

static int slot_take(struct server *srv, struct module *mod)
{
	if (!srv)
		return 0;
	for (int i = 0; i < srv->nslots; i++)
		if (!srv->slot_owner[i]) {
			srv->slot_owner[i] = mod;
			return i;
		}
	srv->slot_owner = xrealloc(srv->slot_owner, (size_t)(srv->nslots + 1) * sizeof *srv->slot_owner);
	srv->slot_owner[srv->nslots] = mod;
	return srv->nslots++;
}

static void slot_give(struct server *srv, struct module *mod)
{
	if (srv && mod->conf.index >= 0 && mod->conf.index < srv->nslots &&
	    srv->slot_owner[mod->conf.index] == mod)
		srv->slot_owner[mod->conf.index] = NULL;
	if (srv && srv->nslots == 0)
		return;
	while (srv && srv->nslots > 0 && !srv->slot_owner[srv->nslots - 1])
		srv->nslots--;
	if (srv && srv->nslots == 0)
		xfree(&srv->slot_owner);
}

/* --- sharing an instance with the running generation --- */

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* The block modules.NAME of c, or NULL. */
static config_setting_t *block_of(const struct config *c, const char *name)
{
	char *bpath = xasprintf("modules.%s", name);
	config_setting_t *b = config_lookup(&c->cfg, bpath);
	free(bpath);
	return b;
}

static void block_text(const struct config *c, const char *name, struct buf *o)
{
	config_setting_t *b = block_of(c, name);
	if (b)
		config_render(b, 0, o);
}

/* A fingerprint of the files a module block names: every string in it
 * (in lists and groups too) that is the path of a regular file, with its
 * identity, size and times.  A module reads such files (rules, tables,
 * sender lists) at init; an instance must not be kept across a reload
 * when one of them was edited, replaced, created or removed, though the
 * block reads the same.  The times are stat's nanoseconds, so an edit
 * within the same second is seen (and ctime catches a file put back with
 * its old mtime). */
static void files_stamp(const config_setting_t *s, struct buf *o)
{
	if (!s)
		return;
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		const char *path = config_setting_get_string(s);
		struct stat st;
		if (path && path[0] && stat(path, &st) == 0 && S_ISREG(st.st_mode))
			buf_addf(o, "%s\t%llu %llu %lld %lld.%09ld %lld.%09ld\n", path,
			         (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
			         (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
			         (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
		return;
	}
	int n = config_setting_is_aggregate(s) ? config_setting_length(s) : 0;
	for (int i = 0; i < n; i++)
		files_stamp(config_setting_get_elem(s, (unsigned)i), o);
}

/* May the new configuration use instance mod of the old one?  Its block
 * and every global setting a module can read (host.c h_global_string)
 * must be the same, and it must come from the same module_path. */
static bool shareable(const struct module *mod, const struct config *nc, const struct config *oc)
{
	if (!same_str(nc->hostname, oc->hostname) || !same_str(nc->resolver, oc->resolver) ||
	    !same_str(nc->relayhost, oc->relayhost) || !same_str(nc->relayhost_tls, oc->relayhost_tls) ||
	    !same_str(nc->spool, oc->spool) || !same_str(nc->module_path, oc->module_path))
		return false;
	struct buf a = {0}, b = {0}, f = {0};
	block_text(nc, mod->desc->name, &a);
	block_text(oc, mod->desc->name, &b);
	bool same = a.len == b.len && (!a.len || !memcmp(a.data, b.data, a.len));
	if (same) {
		files_stamp(block_of(nc, mod->desc->name), &f);
		same = f.len == mod->files.len && (!f.len || !memcmp(f.data, mod->files.data, f.len));
	}
	buf_free(&a);
	buf_free(&b);
	buf_free(&f);
	return same;
}

static struct module *module_share(struct modules *m, struct config *cfg, const char *name)
{
	if (!m->share)
		return NULL;
	const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	for (int i = 0; i < m->share->n; i++) {
		struct module *c = m->share->v[i];
		if ((strcmp(c->desc->name, base) && !(c->path && !strcmp(c->path, name))) ||
		    !c->inited || !shareable(c, cfg, m->share_cfg))
			continue;
		c->refs++;
		m->v = xrealloc(m->v, (size_t)(m->n + 1) * sizeof *m->v);
		m->v[m->n++] = c;
		m->nshared++;
		return c;
	}
	return NULL;
}

struct module *module_find(struct modules *m, const char *name)
{
	for (int i = 0; i < m->n; i++)
		if (!strcmp(m->v[i]->desc->name, name))
			return m->v[i];
	return NULL;
}

static const char *stype_word(enum petrel_setting_type t)
{
	switch (t) {
	case PETREL_SET_STRING: return "a string";
	case PETREL_SET_INT: return "an integer";
	case PETREL_SET_BOOL: return "true or false";
	case PETREL_SET_STRING_LIST: return "a list of strings";
	default: return "?";
	}
}

static int stype_ok(config_setting_t *s, enum petrel_setting_type t)
{
	int ty = config_setting_type(s);
	switch (t) {
	case PETREL_SET_STRING: return ty == CONFIG_TYPE_STRING;
	case PETREL_SET_INT: return ty == CONFIG_TYPE_INT || ty == CONFIG_TYPE_INT64;
	case PETREL_SET_BOOL: return ty == CONFIG_TYPE_BOOL;
	case PETREL_SET_STRING_LIST:
		if (ty != CONFIG_TYPE_ARRAY && ty != CONFIG_TYPE_LIST)
			return 0;
		for (int i = 0; i < config_setting_length(s); i++)
			if (config_setting_type(config_setting_get_elem(s, i)) != CONFIG_TYPE_STRING)
				return 0;
		return 1;
	default: return 0;
	}
}

/* Check a module's block against its declared settings. */
static int check_block(struct module *mod, struct config *cfg, struct buf *errs)
{
	const struct petrel_setting *st = mod->desc->settings;
	config_setting_t *b = mod->conf.block;
	int bad = 0;
	for (int i = 0; b && i < config_setting_length(b); i++) {
		config_setting_t *s = config_setting_get_elem(b, i);
		const struct petrel_setting *k = NULL;
		for (int j = 0; st && st[j].type != PETREL_SET_END; j++)
			if (!strcmp(st[j].name, config_setting_name(s)))
				k = &st[j];
		if (!k) {
			config_error_at(cfg, s, errs, "unknown setting of module '%s'", mod->desc->name);
			bad = 1;
		} else if (!stype_ok(s, k->type)) {
			config_error_at(cfg, s, errs, "must be %s (%s)", stype_word(k->type), k->help);
			bad = 1;
		}
	}
	for (int j = 0; st && st[j].type != PETREL_SET_END; j++)
		if (st[j].required && (!b || !config_setting_get_member(b, st[j].name))) {
			config_error_at(cfg, b ? b : config_lookup(&cfg->cfg, "modules"), errs,
			                "module '%s' needs setting '%s' (%s)", mod->desc->name,
			                st[j].name, st[j].help);
			bad = 1;
		}
	return bad ? -1 : 0;
}

/* Report a problem with module 'name' at the setting that named it. */
__attribute__((format(printf, 5, 6)))
static void where_error(struct config *cfg, config_setting_t *where, struct buf *errs,
                        const char *name, const char *fmt, ...)
{
	struct buf msg = {0};
	va_list ap;
	va_start(ap, fmt);
	buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (where)
		config_error_at(cfg, where, errs, "%s", msg.data);
	else
		buf_addf(errs, "%s:0: module %s: %s\n", cfg->file, name, msg.data);
	buf_free(&msg);
}

/* Is st (the file or a directory above it) safe to take code from?
 * NULL, or why not (static text, or in why[]). */
static const char *unsafe_why(const struct stat *st, bool dir, char *why, size_t len)
{
	uid_t me = geteuid();
	if (!dir && !S_ISREG(st->st_mode))
		return "not a regular file";
	if (st->st_uid != 0 && st->st_uid != me) {
		snprintf(why, len, "owned by uid %d, neither root nor the user petreld runs as (uid %d)",
		         (int)st->st_uid, (int)me);
		return why;
	}
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(dir && (st->st_mode & S_ISVTX))) {
		mode_t w = st->st_mode & (S_IWGRP | S_IWOTH);
		snprintf(why, len, "writable by %s (mode %04o)",
		         w == S_IWGRP ? "its group" : w == S_IWOTH ? "others" : "its group and others",
		         (unsigned)(st->st_mode & 07777));
		return why;
	}
	return NULL;
}

/* Check the module file 'path' (absolute) and every directory above it;
 * -1 with the reason in err. */
__attribute__((warn_unused_result))
static int module_file_check(const char *path, struct buf *err)
{
	char why[160];
	struct stat st;
	if (stat(path, &st) < 0) {
		buf_addf(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	const char *bad = unsafe_why(&st, false, why, sizeof why);
	if (bad) {
		buf_addf(err, "%s: %s", path, bad);
		return -1;
	}
	char *dir = xstrdup(path);
	for (char *slash = strrchr(dir, '/'); slash; slash = strrchr(dir, '/')) {
		slash[slash == dir] = 0;           /* "/a/b" -> "/a" -> "/" */
		if (stat(dir, &st) < 0) {
			buf_addf(err, "directory %s: %s", dir, strerror(errno));
			free(dir);
			return -1;
		}
		bad = unsafe_why(&st, true, why, sizeof why);
		if (bad) {
			buf_addf(err, "directory %s (of %s): %s", dir, path, bad);
			free(dir);
			return -1;
		}
		if (slash == dir)
			break;
	}
	free(dir);
	return 0;
}

/* The module file for 'base' in directory 'dir': dir/base.so, or a
 * libtool build tree's dir/.libs/base.so ("x.la" and "x.so" name x).
 * Returns a new absolute path, or NULL when neither exists. */
static char *module_file_in(const char *dir, const char *base)
{
	size_t n = strlen(base);
	if (n > 3 && (!strcmp(base + n - 3, ".so") || !strcmp(base + n - 3, ".la")))
		n -= 3;
	char *cwd = NULL;
	if (dir[0] != '/')
		cwd = getcwd(NULL, 0);
	const char *pre = cwd ? cwd : "", *sep = cwd ? "/" : "";
	const char *subs[] = { "", "/.libs" };
	for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
		char *p = xasprintf("%s%s%s%s/%.*s.so", pre, sep, dir, subs[i], (int)n, base);
		if (access(p, F_OK) == 0) {
			free(cwd);
			return p;
		}
		free(p);
	}
	free(cwd);
	return NULL;
}

/* Find the file of module 'name' (a name searched in module_path, or a
 * path when it holds a '/'); NULL with the reason in err. */
static char *module_find_file(const char *name, const char *module_path, struct buf *err)
{
	const char *slash = strrchr(name, '/');
	if (slash) {
		char *dir = slash == name ? xstrdup("/") : xstrndup(name, (size_t)(slash - name));
		char *p = module_file_in(dir, slash + 1);
		free(dir);
		if (!p)
			buf_addf(err, "no %s.so there", name);
		return p;
	}
	const char *d = module_path;
	while (d && *d) {
		const char *colon = strchr(d, ':');
		size_t len = colon ? (size_t)(colon - d) : strlen(d);
		if (len) {
			char *dir = xstrndup(d, len);
			char *p = module_file_in(dir, name);
			free(dir);
			if (p)
				return p;
		}
		d = colon ? colon + 1 : NULL;
	}
	buf_addf(err, "not found in module_path; searched %s", module_path ? module_path : "");
	return NULL;
}

struct module *module_get(struct modules *m, struct config *cfg, const char *name,
                          config_setting_t *where, struct buf *errs)
{
	const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	for (int i = 0; i < m->n; i++)
		if (!strcmp(m->v[i]->desc->name, base) || (m->v[i]->path && !strcmp(m->v[i]->path, name)))
			return m->v[i];
	struct module *shared = module_share(m, cfg, name);
	if (shared)
		return shared;
	if (!ltdl_ready) {
		if (lt_dlinit() != 0)
			log_fatal("lt_dlinit: %s", lt_dlerror());
		ltdl_ready = 1;
	}
	struct buf why = {0};
	char *file = module_find_file(name, cfg->module_path, &why);
	if (!file) {
		where_error(cfg, where, errs, name, "module '%s' cannot be loaded: %s", name, why.data);
		buf_free(&why);
		return NULL;
	}
	if (module_file_check(file, &why) < 0) {
		where_error(cfg, where, errs, name, "module '%s' refused: %s", name, why.data);
		buf_free(&why);
		free(file);
		return NULL;
	}
	buf_free(&why);
	lt_dlhandle h = lt_dlopen(file);    /* a path: libltdl searches nothing */
	if (!h) {
		where_error(cfg, where, errs, name, "module '%s' cannot be loaded: %s: %s", name,
		            file, lt_dlerror());
		free(file);
		return NULL;
	}
	free(file);
	const struct petrel_module *d = lt_dlsym(h, PETREL_MODULE_SYMBOL);
	if (!d) {
		where_error(cfg, where, errs, name,
		            "'%s' is not a petrel module (no symbol " PETREL_MODULE_SYMBOL ")", name);
		lt_dlclose(h);
		return NULL;
	}
	if (d->api_major != PETREL_API_MAJOR) {
		where_error(cfg, where, errs, name,
		            "module '%s' refused: built for module API %u.%u, this petreld has API %d.%d",
		            name, d->api_major, d->api_minor, PETREL_API_MAJOR, PETREL_API_MINOR);
		lt_dlclose(h);
		return NULL;
	}
	if (!d->name || !d->name[0]) {
		where_error(cfg, where, errs, name, "module '%s' has no name in its descriptor", name);
		lt_dlclose(h);
		return NULL;
	}
	if (module_find(m, d->name)) {
		where_error(cfg, where, errs, name,
		            "module '%s' refused: another loaded module is named '%s'", name, d->name);
		lt_dlclose(h);
		return NULL;
	}
	struct module *mod = xcalloc(1, sizeof *mod);
	mod->desc = d;
	mod->handle = h;
	mod->path = strchr(name, '/') ? xstrdup(name) : NULL;
	mod->refs = 1;
	mod->cfg_ref = config_ref(cfg);
	nlive++;
	char *bpath = xasprintf("modules.%s", d->name);
	mod->conf = (struct petrel_conf){ .srv = m->srv, .cfg = cfg, .index = slot_take(m->srv, mod),
	                                  .block = config_lookup(&cfg->cfg, bpath),
	                                  .modname = d->name, .errs = errs };
	free(bpath);
	m->v = xrealloc(m->v, (size_t)(m->n + 1) * sizeof *m->v);
	m->v[m->n++] = mod;
	if (check_block(mod, cfg, errs) < 0)
		return NULL;
	files_stamp(mod->conf.block, &mod->files);    /* before init reads them */
	mod->inited = true;
	if (d->init && (d->init(&petrel_host_v1, &mod->conf, &mod->state) < 0 || mod->conf.failed)) {
		if (!mod->conf.failed)
			where_error(cfg, where, errs, d->name, "module '%s' failed to initialise", d->name);
		return NULL;
	}
	return mod;
}

void modules_free(struct modules *m)
{
	for (int i = m->n - 1; i >= 0; i--) {
		struct module *mod = m->v[i];
		if (--mod->refs > 0)
			continue;
		if (m->srv)
			module_timers_cancel(m->srv, &mod->conf);
		if (mod->inited && mod->desc->fini)
			mod->desc->fini(mod->state);
		lt_dlclose(mod->handle);
		slot_give(m->srv, mod);
		config_free(&mod->cfg_ref);
		buf_free(&mod->files);
		free(mod->path);
		free(mod);
		nlive--;
	}
	xfree(&m->v);
	m->n = 0;
	if (ltdl_ready && nlive == 0) {
		lt_dlexit();
		ltdl_ready = 0;
	}
}
