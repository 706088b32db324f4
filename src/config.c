/*
 * config.c - load and check petrel.conf (see config.h).
 *
 * The table 'settings' is the single source of truth for top-level names,
 * types and help texts; etc/petrel.conf is checked against it by a test.
 */
#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef PETREL_MODULEDIR
#define PETREL_MODULEDIR "/usr/local/lib/petrel/modules"
#endif

const char config_default_text[] =
	"# petreld's embedded default: a local test server.\n"
	"hostname = \"localhost\";\n"
	"spool = \"petrel-data/spool\";\n"
	"listeners = ( { listen = \"127.0.0.1:2525\"; stage = \"mta\"; } );\n"
	"domains = [ \"localhost\" ];\n"
	"# Known recipients only (as Postfix's local_recipient_maps): a stranger's\n"
	"# local part gets 550 5.1.1 at RCPT instead of a new maildir.\n"
	"modules = { maildir = { root = \"petrel-data/mail/%d/%u\"; };\n"
	"            router = { mailboxes = [ \"postmaster@localhost\", \"user@localhost\" ]; }; };\n";

enum stype { T_STRING, T_INT, T_SIZE, T_BOOL, T_STRLIST, T_LIST, T_GROUP };

struct setting;
typedef int setter_fn(struct config *c, const struct setting *st, config_setting_t *s,
                      struct buf *errs);

struct setting {
	const char *name;
	enum stype type;
	size_t offset;          /* into struct config, for simple types: int (T_INT),
	                         * uint64_t (T_SIZE), char * (T_STRING), char ** (T_STRLIST) */
	size_t count;           /* T_STRLIST: where the int element count goes */
	long long min, max;     /* T_INT and T_SIZE bounds */
	setter_fn *set;         /* for the complex ones */
	const char *help;
};

static setter_fn set_listeners, set_relay, set_domains, set_modules, set_routes, set_relayhost,
	set_relayhost_tls, set_resolver, set_credentials, set_pickup,
	set_metrics_listen;
static void free_strv(char ***v, int n);

#define OFF(f) offsetof(struct config, f)

static const struct setting settings[] = {
	{ .name = "hostname", .type = T_STRING, .offset = OFF(hostname),
	  .help = "name in the greeting, Received headers and bounces (default: the system's)" },
	{ .name = "spool", .type = T_STRING, .offset = OFF(spool),
	  .help = "queue directory; relative paths are taken from the start directory" },
	{ .name = "control_socket", .type = T_STRING, .offset = OFF(control_socket),
	  .help = "Unix socket of petrelctl (mode 0660, group of user); relative paths are taken from "
	          "the spool (default \"control\")" },
	{ .name = "user", .type = T_STRING, .offset = OFF(user),
	  .help = "unprivileged user to run as after binding the listeners (when started as root)" },
	{ .name = "listeners", .type = T_LIST, .set = set_listeners,
	  .help = "list of { listen = \"ADDR:PORT\"; stage = \"mta\"|\"msa\"; tls = \"none\"|\"starttls\"|\"implicit\"; "
	          "auth = true; ... }" },
	{ .name = "domains", .type = T_STRLIST, .set = set_domains,
	  .help = "local domains: mail for them is delivered here" },
	{ .name = "relay_networks", .type = T_STRLIST, .set = set_relay,
	  .help = "client networks (CIDR) that may relay without AUTH; empty by default" },
	{ .name = "filters", .type = T_STRLIST, .offset = OFF(filters), .count = OFF(nfilters),
	  .help = "the filter chain: module names, in the order they run" },
	{ .name = "router", .type = T_STRING, .offset = OFF(router),
	  .help = "router module (default \"router\")" },
	{ .name = "module_path", .type = T_STRING, .offset = OFF(module_path),
	  .help = "colon-separated directories searched for modules (default: the installed moduledir)" },
	{ .name = "message_size_limit", .type = T_SIZE, .offset = OFF(message_size_limit),
	  .min = 1024, .max = (long long)1 << 40,
	  .help = "largest message accepted, in bytes (default 10240000)" },
	{ .name = "queue_minfree", .type = T_SIZE, .offset = OFF(queue_minfree),
	  .min = 0, .max = (long long)1 << 50,
	  .help = "free bytes the spool's filesystem must keep, besides the SIZE a client declares; "
	          "at least 1.5 x message_size_limit (default 0); less gives 452 4.3.1 at MAIL" },
	{ .name = "recipient_limit", .type = T_INT, .offset = OFF(recipient_limit),
	  .min = 100, .max = 100000, .help = "recipients per message (default 1000; RFC 5321 asks >= 100)" },
	{ .name = "hopcount_limit", .type = T_INT, .offset = OFF(hopcount_limit),
	  .min = 1, .max = 1000, .help = "Received: headers allowed before a message is refused as looping (default 100)" },
	{ .name = "header_size_limit", .type = T_SIZE, .offset = OFF(header_size_limit),
	  .min = 1024, .max = (long long)1 << 30,
	  .help = "bytes of one header field, continuation lines included, in the message's header "
	          "section or a MIME part's; more refuses the message with 552 5.3.4 (default 102400)" },
	{ .name = "header_count_limit", .type = T_INT, .offset = OFF(header_count_limit),
	  .min = 10, .max = 10000000,
	  .help = "header fields in the message's header section, and in each MIME part's; more "
	          "refuses the message with 552 5.3.4 (default 1000)" },
	{ .name = "smtp_timeout", .type = T_INT, .offset = OFF(smtp_timeout), .min = 1, .max = 3600,
	  .help = "seconds to wait for the next command (default 300)" },
	{ .name = "data_timeout", .type = T_INT, .offset = OFF(data_timeout), .min = 1, .max = 86400,
	  .help = "seconds allowed for a whole DATA or BDAT transfer (default 600)" },
	{ .name = "queue_lifetime", .type = T_INT, .offset = OFF(queue_lifetime), .min = 1,
	  .max = 60 * 86400, .help = "seconds a deferred message is retried before it bounces (default 5 days)" },
	{ .name = "retry_initial", .type = T_INT, .offset = OFF(retry_initial), .min = 1, .max = 86400,
	  .help = "seconds before the first retry of a deferred delivery (default 300); doubles each time" },
	{ .name = "retry_max", .type = T_INT, .offset = OFF(retry_max), .min = 1, .max = 86400,
	  .help = "longest wait between retries, in seconds (default 4000)" },
	{ .name = "delivery_workers", .type = T_INT, .offset = OFF(delivery_workers), .min = 1, .max = 256,
	  .help = "threads that run blocking deliveries (default 32)" },
	{ .name = "filter_workers", .type = T_INT, .offset = OFF(filter_workers), .min = 1, .max = 256,
	  .help = "threads for the blocking work of filters (host->work_submit) and password checks (default 2)" },
	{ .name = "max_connections", .type = T_INT, .offset = OFF(max_connections), .min = 1,
	  .max = 1000000, .help = "concurrent SMTP sessions accepted (default 10000; lowered at start "
	                          "to what RLIMIT_NOFILE allows, with a warning); more get 421 4.7.0" },
	{ .name = "pending_timeout", .type = T_INT, .offset = OFF(pending_timeout), .min = 1,
	  .max = 3600, .help = "seconds a filter hook may stay pending before the step tempfails (default 30)" },
	{ .name = "tls_cert_file", .type = T_STRING, .offset = OFF(tls_cert_file),
	  .help = "PEM certificate (chain) of TLS listeners; a listener may set its own" },
	{ .name = "tls_key_file", .type = T_STRING, .offset = OFF(tls_key_file),
	  .help = "PEM private key of tls_cert_file; read before privileges are dropped" },
	{ .name = "auth_passwords", .type = T_STRING, .offset = OFF(auth_passwords),
	  .help = "file of \"user:HASH\" lines (crypt(3) hashes) for AUTH PLAIN/LOGIN; read at start" },
	{ .name = "auth_failure_limit", .type = T_INT, .offset = OFF(auth_failure_limit), .min = 1,
	  .max = 1000, .help = "failed AUTH attempts before the session gets 421 and is closed (default 3)" },
	{ .name = "auth_client_failure_limit", .type = T_INT, .offset = OFF(auth_client_failure_limit),
	  .min = 0, .max = 1000000,
	  .help = "wrong passwords from one client address (IPv6: its /64) within auth_client_failure_window "
	          "before its AUTH gets 454 4.7.0 with no password checked (default 10; 0: no limit)" },
	{ .name = "auth_client_failure_window", .type = T_INT, .offset = OFF(auth_client_failure_window),
	  .min = 1, .max = 86400, .help = "seconds over which auth_client_failure_limit counts (default 600)" },
	{ .name = "auth_client_concurrency", .type = T_INT, .offset = OFF(auth_client_concurrency),
	  .min = 1, .max = 1000,
	  .help = "password checks one client address may have running at once; more get 454 4.7.0 (default 2)" },
	{ .name = "soft_error_limit", .type = T_INT, .offset = OFF(soft_error_limit), .min = 0, .max = 1000,
	  .help = "errors (4xx/5xx replies) in a session without a delivered message before every reply "
	          "waits error_sleep_time (default 10)" },
	{ .name = "hard_error_limit", .type = T_INT, .offset = OFF(hard_error_limit), .min = 1, .max = 1000,
	  .help = "errors in a session without a delivered message before it gets 421 and is closed (default 20)" },
	{ .name = "error_sleep_time", .type = T_INT, .offset = OFF(error_sleep_time), .min = 0, .max = 60,
	  .help = "seconds each reply waits once soft_error_limit is passed (default 1; 0: no wait)" },
	{ .name = "junk_command_limit", .type = T_INT, .offset = OFF(junk_command_limit), .min = 1,
	  .max = 1000000000,
	  .help = "NOOP, RSET, VRFY, HELP, HELO/EHLO in a session without a delivered message before each "
	          "one counts as an error (default 100)" },
	{ .name = "resolver", .type = T_STRING, .set = set_resolver,
	  .help = "DNS server \"ADDR:PORT\" the smtp transport asks instead of /etc/resolv.conf's (\"\": those)" },
	{ .name = "routes", .type = T_LIST, .set = set_routes,
	  .help = "list of { domain = \"a.example\"|\".sub.example\"|\"*\"; transport = \"smtp\"; "
	          "nexthop = \"[host]:port\"; tls = ...; } for non-local domains; first match wins" },
	{ .name = "relayhost", .type = T_STRING, .set = set_relayhost,
	  .help = "smarthost for non-local mail no route matches: \"[host]:port\" (brackets: no MX "
	          "lookup) or \"host\"; default: the domain's MX" },
	{ .name = "relayhost_tls", .type = T_STRING, .set = set_relayhost_tls,
	  .help = "TLS to the relayhost: \"starttls\" (required), \"implicit\" (TLS at connect, port "
	          "465) or \"none\"; default: the smtp transport's tls policy" },
	{ .name = "relayhost_credentials", .type = T_STRING, .set = set_credentials,
	  .help = "file \"user:password\" for AUTH at the relayhost; mode 0600 or stricter, read at start" },
	{ .name = "delay_warning_time", .type = T_INT, .offset = OFF(delay_warning_time), .min = 0,
	  .max = 60 * 86400,
	  .help = "seconds after which the sender is told a message is still being retried (0: never, the default)" },
	/* connection and session limits (limits4) */
	{ .name = "client_connection_limit", .type = T_INT, .offset = OFF(client_connection_limit),
	  .min = 0, .max = 1000000,
	  .help = "concurrent sessions from one client address, IPv6 counted per /64 (default 50, "
	          "0: no limit; relay_networks are exempt); more get 421 4.7.0" },
	{ .name = "min_data_rate", .type = T_INT, .offset = OFF(min_data_rate), .min = 0,
	  .max = 1 << 30,
	  .help = "bytes/s DATA and BDAT must keep up: each byte received extends the smtp_timeout "
	          "deadline of the transfer by 1/min_data_rate s (default 500, 0: per read only)" },
	{ .name = "greet_pause", .type = T_INT, .offset = OFF(greet_pause), .min = 0, .max = 60000,
	  .help = "milliseconds the greeting waits; a client that talks before it gets 554 and is "
	          "closed (default 1000; 0: only input that came while connect hooks ran; "
	          "relay_networks and msa listeners are exempt)" },
	{ .name = "pickup_socket", .type = T_STRING, .offset = OFF(pickup_socket), .set = set_pickup,
	  .help = "Unix socket where petrel-sendmail hands over local mail, open to every local user "
	          "(relative: inside the spool; default \"public/pickup\"; \"\": none)" },
	/* operations (issue 10) */
	{ .name = "metrics_listen", .type = T_STRING, .set = set_metrics_listen,
	  .help = "\"ADDR:PORT\" (IPv4 or [IPv6]) where GET /metrics serves the counters in the "
	          "Prometheus/OpenMetrics text format; unset or \"\": off (the default)" },
	{ .name = "modules", .type = T_GROUP, .set = set_modules,
	  .help = "one block per module with that module's own settings" },
};

const char *config_setting_name_at(int i)
{
	return i >= 0 && (size_t)i < sizeof settings / sizeof settings[0] ? settings[i].name : NULL;
}

void config_print_help(void)
{
	for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
		printf("%-20s %s\n", settings[i].name, settings[i].help);
}

static const char *setting_file(const struct config *c, config_setting_t *s)
{
	const char *f = s ? config_setting_source_file(s) : NULL;
	return f ? f : c->file;
}

static void setting_path(config_setting_t *s, struct buf *out)
{
	if (!s || config_setting_is_root(s))
		return;
	config_setting_t *p = config_setting_parent(s);
	setting_path(p, out);
	if (p && !config_setting_is_root(p))
		buf_adds(out, config_setting_is_list(p) || config_setting_is_array(p) ? "" : ".");
	const char *name = config_setting_name(s);
	if (name)
		buf_adds(out, name);
	else
		buf_addf(out, "[%d]", config_setting_index(s));
}

void config_error_at(const struct config *c, config_setting_t *s, struct buf *errs,
                     const char *fmt, ...)
{
	struct buf path = {0};
	setting_path(s, &path);
	buf_addf(errs, "%s:%d: %s: ", setting_file(c, s), s ? (int)config_setting_source_line(s) : 0,
	         path.data ? path.data : "(top)");
	buf_free(&path);
	va_list ap;
	va_start(ap, fmt);
	buf_vaddf(errs, fmt, ap);
	va_end(ap);
	buf_adds(errs, "\n");
}

static const char *type_word(enum stype t)
{
	static const char *w[] = { [T_STRING] = "a string", [T_INT] = "an integer",
		[T_SIZE] = "an integer",
		[T_BOOL] = "true or false", [T_STRLIST] = "a list of strings [ \"...\" ]",
		[T_LIST] = "a list ( {...} )", [T_GROUP] = "a group { ... }" };
	return w[t];
}

static bool type_ok(config_setting_t *s, enum stype t)
{
	int ty = config_setting_type(s);
	switch (t) {
	case T_STRING: return ty == CONFIG_TYPE_STRING;
	case T_INT:
	case T_SIZE: return ty == CONFIG_TYPE_INT || ty == CONFIG_TYPE_INT64;
	case T_BOOL: return ty == CONFIG_TYPE_BOOL;
	case T_STRLIST:
		if (ty != CONFIG_TYPE_ARRAY && ty != CONFIG_TYPE_LIST)
			return false;
		for (int i = 0; i < config_setting_length(s); i++)
			if (config_setting_type(config_setting_get_elem(s, i)) != CONFIG_TYPE_STRING)
				return false;
		return true;
	case T_LIST: return ty == CONFIG_TYPE_LIST;
	case T_GROUP: return ty == CONFIG_TYPE_GROUP;
	}
	return false;
}

static char **strlist(config_setting_t *s, int *n, bool lower)
{
	*n = config_setting_length(s);
	char **v = xcalloc((size_t)*n + 1, sizeof *v);
	for (int i = 0; i < *n; i++) {
		v[i] = xstrdup(config_setting_get_string_elem(s, i));
		if (lower)
			for (char *p = v[i]; *p; p++)
				*p = (char)tolower((unsigned char)*p);
	}
	return v;
}

static int set_domains(struct config *c, const struct setting *st, config_setting_t *s,
                       struct buf *errs)
{
	(void)st;
	c->domains = strlist(s, &c->ndomains, true);
	for (int i = 0; i < c->ndomains; i++)
		if (!c->domains[i][0] || strchr(c->domains[i], '@') || strchr(c->domains[i], ' ')) {
			config_error_at(c, config_setting_get_elem(s, i), errs,
			                "'%s' is not a domain name", c->domains[i]);
			return -1;
		}
	return 0;
}

int config_parse_cidr(const char *s, struct cidr *out)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= sizeof addr)
		return -1;
	memcpy(addr, s, alen);
	addr[alen] = 0;
	memset(out, 0, sizeof *out);
	int maxbits;
	if (inet_pton(AF_INET, addr, out->net) == 1) {
		out->family = AF_INET;
		maxbits = 32;
	} else if (inet_pton(AF_INET6, addr, out->net) == 1) {
		out->family = AF_INET6;
		maxbits = 128;
	} else {
		return -1;
	}
	out->bits = maxbits;
	if (slash) {
		char *end;
		errno = 0;
		long b = strtol(slash + 1, &end, 10);
		if (errno || *end || end == slash + 1 || b < 0 || b > maxbits)
			return -1;
		out->bits = (int)b;
	}
	return 0;
}

bool cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	const unsigned char *a;
	unsigned char mapped[4];
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (c->family == AF_INET && IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(mapped, a6->s6_addr + 12, 4);
			a = mapped;
		} else if (c->family == AF_INET6) {
			a = a6->s6_addr;
		} else {
			return false;
		}
	} else if (sa->sa_family == AF_INET && c->family == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else {
		return false;
	}
	int full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(a, c->net, (size_t)full) != 0)
		return false;
	if (rest) {
		unsigned char mask = (unsigned char)(0xff << (8 - rest));
		if ((a[full] & mask) != (c->net[full] & mask))
			return false;
	}
	return true;
}

static int set_relay(struct config *c, const struct setting *st, config_setting_t *s,
                     struct buf *errs)
{
	(void)st;
	int n = config_setting_length(s);
	c->relay = xcalloc((size_t)n + 1, sizeof *c->relay);
	for (int i = 0; i < n; i++) {
		const char *v = config_setting_get_string_elem(s, i);
		if (config_parse_cidr(v, &c->relay[i]) < 0) {
			config_error_at(c, config_setting_get_elem(s, i), errs,
			                "'%s' is not an address or network (CIDR)", v);
			return -1;
		}
	}
	c->nrelay = n;
	return 0;
}

int config_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                        const char **why)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port;
	size_t hl;
	memset(ss, 0, sizeof *ss);
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':') {
			*why = "expected [IPv6]:PORT";
			return -1;
		}
		hl = (size_t)(rb - s - 1);
		if (hl >= sizeof host) {
			*why = "bad IPv6 address";
			return -1;
		}
		memcpy(host, s + 1, hl);
		port = rb + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon) {
			*why = "expected ADDRESS:PORT";
			return -1;
		}
		hl = (size_t)(colon - s);
		if (hl >= sizeof host) {
			*why = "bad address";
			return -1;
		}
		memcpy(host, s, hl);
		port = colon + 1;
	}
	host[hl] = 0;
	char *end;
	errno = 0;
	long p = strtol(port, &end, 10);
	if (errno || *end || end == port || p < 1 || p > 65535) {
		*why = "bad port (1-65535)";
		return -1;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		*len = sizeof *s4;
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		*len = sizeof *s6;
	} else {
		*why = "not a numeric IPv4 or IPv6 address";
		return -1;
	}
	return 0;
}

static const char listener_known[] =
	"listen, stage, tls, filters, tls_cert_file, tls_key_file, auth, auth_cleartext";

/* Check one member of a listener group; the simple ones are stored here,
 * listen/stage/tls by the caller.  Returns 1 when it is bad. */
static int listener_member(struct config *c, struct listener_conf *l, config_setting_t *m,
                           struct buf *errs)
{
	const char *nm = config_setting_name(m);
	if (!strcmp(nm, "filters")) {
		if (!type_ok(m, T_STRLIST)) {
			config_error_at(c, m, errs, "must be a list of strings");
			return 1;
		}
		l->filters = strlist(m, &l->nfilters, false);
		l->filters_setting = m;
		return 0;
	}
	if (!strcmp(nm, "auth") || !strcmp(nm, "auth_cleartext")) {
		if (!type_ok(m, T_BOOL)) {
			config_error_at(c, m, errs, "must be true or false");
			return 1;
		}
		bool on = config_setting_get_bool(m);
		if (!strcmp(nm, "auth"))
			l->auth = on;
		else
			l->auth_cleartext = on;
		return 0;
	}
	bool is_file = !strcmp(nm, "tls_cert_file") || !strcmp(nm, "tls_key_file");
	if (!is_file && strcmp(nm, "listen") && strcmp(nm, "stage") && strcmp(nm, "tls")) {
		config_error_at(c, m, errs, "unknown listener setting (known: %s)", listener_known);
		return 1;
	}
	if (config_setting_type(m) != CONFIG_TYPE_STRING) {
		config_error_at(c, m, errs, "must be a string");
		return 1;
	}
	if (is_file) {
		const char *v = config_setting_get_string(m);
		if (!*v) {
			config_error_at(c, m, errs, "must not be empty");
			return 1;
		}
		bool cert = !strcmp(nm, "tls_cert_file");
		*(cert ? &l->tls_cert_file : &l->tls_key_file) = xstrdup(v);
		*(cert ? &l->tls_cert_setting : &l->tls_key_setting) = m;
	}
	return 0;
}

/* After the whole file is read: a TLS listener without its own key pair
 * takes the top-level one, and must end up with both files; an AUTH
 * listener needs the password file.  The files themselves are opened
 * later (tls_setup, auth_db_load), before privileges are dropped. */
static void listeners_resolve(struct config *c, struct buf *errs)
{
	config_setting_t *gcert = config_lookup(&c->cfg, "tls_cert_file");
	config_setting_t *gkey = config_lookup(&c->cfg, "tls_key_file");
	for (int i = 0; i < c->nlisteners; i++) {
		struct listener_conf *l = &c->listeners[i];
		if (!l->setting || config_setting_type(l->setting) != CONFIG_TYPE_GROUP)
			continue;
		if (l->tls != TLS_NONE) {
			if (!l->tls_cert_file && c->tls_cert_file) {
				l->tls_cert_file = xstrdup(c->tls_cert_file);
				l->tls_cert_setting = gcert;
			}
			if (!l->tls_key_file && c->tls_key_file) {
				l->tls_key_file = xstrdup(c->tls_key_file);
				l->tls_key_setting = gkey;
			}
			if (!l->tls_cert_file || !l->tls_key_file)
				config_error_at(c, config_setting_get_member(l->setting, "tls"), errs,
				                "TLS needs tls_cert_file and tls_key_file (in the listener "
				                "or at top level)");
		}
		config_setting_t *auth = config_setting_get_member(l->setting, "auth");
		if (l->auth && !c->auth_passwords)
			config_error_at(c, auth, errs, "auth = true needs the top-level auth_passwords file");
		/* it would never be offered: say so rather than leave it silent */
		if (l->auth && l->tls == TLS_NONE && !l->auth_cleartext)
			config_error_at(c, auth, errs, "AUTH is offered under TLS only: set tls, or "
			                "auth_cleartext = true to allow passwords in clear text");
		/* the msa stage takes mail from logged-in users only (RFC 6409 4.3):
		 * without AUTH every MAIL would get 530 */
		if (l->stage && !strcmp(l->stage, "msa") && !l->auth)
			config_error_at(c, config_setting_get_member(l->setting, "stage"), errs,
			                "stage \"msa\" takes mail from logged-in users only: set auth = true "
			                "(and tls = \"starttls\" or \"implicit\")");
	}
}

static int set_listeners(struct config *c, const struct setting *st, config_setting_t *s,
                         struct buf *errs)
{
	(void)st;
	int n = config_setting_length(s), bad = 0;
	c->listeners = xcalloc((size_t)n + 1, sizeof *c->listeners);
	c->nlisteners = n;
	for (int i = 0; i < n; i++) {
		config_setting_t *g = config_setting_get_elem(s, i);
		struct listener_conf *l = &c->listeners[i];
		l->setting = g;
		if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
			config_error_at(c, g, errs, "a listener is a group { listen = ...; stage = ...; }");
			bad = 1;
			continue;
		}
		for (int k = 0; k < config_setting_length(g); k++)
			bad |= listener_member(c, l, config_setting_get_elem(g, k), errs);
		const char *v;
		config_setting_t *m = config_setting_get_member(g, "listen");
		if (!m || !(v = config_setting_get_string(m))) {
			if (!m)
				config_error_at(c, g, errs, "listen = \"ADDRESS:PORT\" is required");
			bad = 1;
		} else {
			const char *why;
			l->listen = xstrdup(v);
			if (config_parse_listen(v, &l->addr, &l->addrlen, &why) < 0) {
				config_error_at(c, m, errs, "'%s': %s", v, why);
				bad = 1;
			}
		}
		m = config_setting_get_member(g, "stage");
		if (!m || !(v = config_setting_get_string(m))) {
			if (!m)
				config_error_at(c, g, errs, "stage = \"mta\" or \"msa\" is required");
			bad = 1;
		} else {
			l->stage = xstrdup(v);
		}
		m = config_setting_get_member(g, "tls");
		if (m && (v = config_setting_get_string(m))) {
			if (!strcmp(v, "none")) {
				l->tls = TLS_NONE;
			} else if (!strcmp(v, "starttls")) {
				l->tls = TLS_STARTTLS;
			} else if (!strcmp(v, "implicit")) {
				l->tls = TLS_IMPLICIT;
			} else {
				config_error_at(c, m, errs, "'%s': expected \"none\", \"starttls\" or \"implicit\"", v);
				bad = 1;
			}
		}
	}
	return bad ? -1 : 0;
}

static int set_resolver(struct config *c, const struct setting *st, config_setting_t *s,
                        struct buf *errs)
{
	(void)st;
	const char *v = config_setting_get_string(s), *why;
	struct sockaddr_storage ss;
	socklen_t len;
	if (!*v)                /* "": /etc/resolv.conf's */
		return 0;
	if (config_parse_listen(v, &ss, &len, &why) < 0) {
		config_error_at(c, s, errs, "'%s': %s (\"127.0.0.1:53\", \"[::1]:5353\")", v, why);
		return -1;
	}
	free(c->resolver);
	c->resolver = xstrdup(v);
	return 0;
}

/* metrics_listen: checked like a listener's address, bound by metrics.c */
static int set_metrics_listen(struct config *c, const struct setting *st, config_setting_t *s,
                              struct buf *errs)
{
	(void)st;
	const char *v = config_setting_get_string(s), *why;
	struct sockaddr_storage ss;
	socklen_t len;
	if (!*v)                /* "": off */
		return 0;
	if (config_parse_listen(v, &ss, &len, &why) < 0) {
		config_error_at(c, s, errs, "'%s': %s (\"127.0.0.1:9154\", \"[::1]:9154\")", v, why);
		return -1;
	}
	free(c->metrics_listen);
	c->metrics_listen = xstrdup(v);
	return 0;
}

static int set_relayhost(struct config *c, const struct setting *st, config_setting_t *s,
                         struct buf *errs)
{
	(void)st;
	const char *v = config_setting_get_string(s), *why;
	char *norm;
	if (!*v)                /* "": none, by MX (Postfix's default) */
		return 0;
	if (routes_nexthop_normalise(v, &norm, &why) < 0) {
		config_error_at(c, s, errs, "'%s': %s", v, why);
		return -1;
	}
	free(c->relayhost);
	c->relayhost = norm;
	return 0;
}

static int set_relayhost_tls(struct config *c, const struct setting *st, config_setting_t *s,
                             struct buf *errs)
{
	(void)st;
	const char *v = config_setting_get_string(s);
	if (strcmp(v, "starttls") && strcmp(v, "implicit") && strcmp(v, "none")) {
		config_error_at(c, s, errs, "'%s': expected \"starttls\", \"implicit\" or \"none\"", v);
		return -1;
	}
	free(c->relayhost_tls);
	c->relayhost_tls = xstrdup(v);
	return 0;
}

/* pickup_socket: a path, or "" for none (which T_STRING refuses) */
static int set_pickup(struct config *c, const struct setting *st, config_setting_t *s,
                      struct buf *errs)
{
	(void)st;
	(void)errs;
	free(c->pickup_socket);
	c->pickup_socket = xstrdup(config_setting_get_string(s));
	return 0;
}

static int set_credentials(struct config *c, const struct setting *st, config_setting_t *s,
                           struct buf *errs)
{
	(void)st;
	(void)errs;
	const char *v = config_setting_get_string(s);
	free(c->relayhost_credentials);
	c->relayhost_credentials = *v ? xstrdup(v) : NULL;
	return 0;
}

static void route_opt_add(struct route *r, const char *name, const char *value)
{
	r->opts = xrealloc(r->opts, (size_t)(r->nopts + 1) * sizeof *r->opts);
	r->opts[r->nopts++] = (struct route_opt){ .name = xstrdup(name), .value = xstrdup(value) };
}

static void route_clear(struct route *r)
{
	free(r->domain);
	free(r->transport);
	free(r->nexthop);
	for (int i = 0; i < r->nopts; i++) {
		free(r->opts[i].name);
		free(r->opts[i].value);
	}
	free(r->opts);
	memset(r, 0, sizeof *r);
}

static const char *const route_tls_words[] = { "none", "may", "encrypt", "verify", NULL };

/* One { domain; transport; nexthop; tls; ... } of routes.  1 when bad. */
static int route_parse(struct config *c, struct route *r, config_setting_t *g, struct buf *errs)
{
	int bad = 0;
	if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
		config_error_at(c, g, errs, "a route is a group { domain = ...; transport = ...; }");
		return 1;
	}
	for (int k = 0; k < config_setting_length(g); k++) {
		config_setting_t *m = config_setting_get_elem(g, k);
		const char *nm = config_setting_name(m);
		if (config_setting_type(m) != CONFIG_TYPE_STRING) {
			config_error_at(c, m, errs, "must be a string");
			bad = 1;
			continue;
		}
		const char *v = config_setting_get_string(m), *why;
		if (!strcmp(nm, "domain")) {
			r->domain = xstrdup(v);
			for (char *p = r->domain; *p; p++)
				*p = (char)tolower((unsigned char)*p);
			if (!*v || strchr(v, '@') || strchr(v, ' ') || (strchr(v, '*') && strcmp(v, "*")) ||
			    !strcmp(v, ".")) {
				config_error_at(c, m, errs, "'%s': expected \"a.example\", \".sub.example\" or \"*\"", v);
				bad = 1;
			}
		} else if (!strcmp(nm, "transport")) {
			if (!*v || strchr(v, '\t') || strchr(v, '/')) {
				config_error_at(c, m, errs, "'%s' is not a module name", v);
				bad = 1;
			}
			r->transport = xstrdup(v);
		} else if (!strcmp(nm, "nexthop")) {
			free(r->nexthop);
			r->nexthop = NULL;
			if (routes_nexthop_normalise(v, &r->nexthop, &why) < 0) {
				config_error_at(c, m, errs, "'%s': %s", v, why);
				bad = 1;
			}
		} else {
			if (!strcmp(nm, "tls")) {
				bool ok = false;
				for (int i = 0; route_tls_words[i]; i++)
					ok |= !strcmp(v, route_tls_words[i]);
				if (!ok) {
					config_error_at(c, m, errs, "'%s': expected \"none\", \"may\", \"encrypt\" or \"verify\"", v);
					bad = 1;
				}
			}
			route_opt_add(r, nm, v);
		}
	}
	if (!r->domain) {
		config_error_at(c, g, errs, "domain = \"...\" is required");
		bad = 1;
	}
	if (!r->nexthop)
		r->nexthop = xstrdup("");
	return bad;
}

static int set_routes(struct config *c, const struct setting *st, config_setting_t *s,
                      struct buf *errs)
{
	(void)st;
	int n = config_setting_length(s), bad = 0;
	c->routes = xcalloc((size_t)n + 1, sizeof *c->routes);
	c->nroutes = n;
	for (int i = 0; i < n; i++)
		bad |= route_parse(c, &c->routes[i], config_setting_get_elem(s, i), errs);
	return bad ? -1 : 0;
}

/* The relayhost as a route, with the options the transport reads. */
static void relay_route_build(struct config *c)
{
	struct route *r = &c->relay_route;
	r->domain = xstrdup("*");
	r->nexthop = xstrdup(c->relayhost);
	if (c->relayhost_tls) {
		route_opt_add(r, "tls", strcmp(c->relayhost_tls, "none") ? "encrypt" : "none");
		if (!strcmp(c->relayhost_tls, "implicit"))
			route_opt_add(r, "tls_mode", "implicit");
	}
}

int config_read_credentials(struct config *c, struct buf *errs)
{
	if (!c->relayhost_credentials || !c->relayhost)
		return 0;
	config_setting_t *where = config_lookup(&c->cfg, "relayhost_credentials");
	const char *path = c->relayhost_credentials;
	FILE *f = fopen(path, "r");
	struct stat st;
	if (!f || fstat(fileno(f), &st) < 0) {
		config_error_at(c, where, errs, "%s: cannot read: %s", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		config_error_at(c, where, errs, "%s: refused: group or others may read or write it "
		                "(mode %03o; chmod 600)", path, (unsigned)(st.st_mode & 0777));
		fclose(f);
		return -1;
	}
	char line[1024];
	if (!fgets(line, sizeof line, f))
		line[0] = 0;
	fclose(f);
	line[strcspn(line, "\r\n")] = 0;
	char *colon = strchr(line, ':');
	if (!colon || colon == line || !colon[1]) {
		config_error_at(c, where, errs, "%s: expected one line \"user:password\"", path);
		return -1;
	}
	*colon = 0;
	route_opt_add(&c->relay_route, "auth_user", line);
	route_opt_add(&c->relay_route, "auth_password", colon + 1);
	explicit_bzero(line, sizeof line);
	return 0;
}

const struct route *config_route_for(const struct config *c, const char *domain,
                                     const char **nexthop)
{
	*nexthop = "";
	if (config_is_local_domain(c, domain))
		return NULL;
	const struct route *r = routes_match(c->routes, c->nroutes, domain);
	if (!r && c->relayhost)
		r = &c->relay_route;
	if (r)
		*nexthop = r->nexthop;
	return r;
}

static int set_modules(struct config *c, const struct setting *st, config_setting_t *s,
                       struct buf *errs)
{
	(void)st;
	int bad = 0;
	for (int i = 0; i < config_setting_length(s); i++) {
		config_setting_t *m = config_setting_get_elem(s, i);
		if (config_setting_type(m) != CONFIG_TYPE_GROUP) {
			config_error_at(c, m, errs, "a module's settings are a group { ... }");
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

static char *absolute(const char *p)
{
	if (p[0] == '/')
		return xstrdup(p);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		return xstrdup(p);
	return xasprintf("%s/%s", cwd, p);
}

static void set_defaults(struct config *c)
{
	char hn[256];
	if (gethostname(hn, sizeof hn) < 0)
		strcpy(hn, "localhost");
	hn[sizeof hn - 1] = 0;
	c->hostname = xstrdup(hn);
	c->spool = xstrdup("/var/spool/petrel");
	c->control_socket = xstrdup("control");
	c->pickup_socket = xstrdup("public/pickup");
	c->router = xstrdup("router");
	c->message_size_limit = 10240000;
	c->recipient_limit = 1000;
	c->hopcount_limit = 100;
	c->header_size_limit = 102400;
	c->header_count_limit = 1000;
	c->smtp_timeout = 300;
	c->data_timeout = 600;
	c->queue_lifetime = 5 * 86400;
	c->retry_initial = 300;
	c->retry_max = 4000;
	c->delivery_workers = 32;
	c->filter_workers = 2;
	c->max_connections = 10000;
	c->pending_timeout = 30;
	c->auth_failure_limit = 3;
	c->auth_client_failure_limit = 10;
	c->auth_client_failure_window = 600;
	c->auth_client_concurrency = 2;
	c->soft_error_limit = 10;
	c->hard_error_limit = 20;
	c->error_sleep_time = 1;
	c->junk_command_limit = 100;
	c->client_connection_limit = 50;
	c->min_data_rate = 500;
	c->greet_pause = 1000;
}

static int apply(struct config *c, const struct setting *st, config_setting_t *s, struct buf *errs)
{
	if (!type_ok(s, st->type)) {
		config_error_at(c, s, errs, "must be %s", type_word(st->type));
		return -1;
	}
	if (st->set)
		return st->set(c, st, s, errs);
	void *field = (char *)c + st->offset;
	switch (st->type) {
	case T_STRING: {
		char **dst = field;
		free(*dst);
		*dst = xstrdup(config_setting_get_string(s));
		if (!**dst) {
			config_error_at(c, s, errs, "must not be empty");
			return -1;
		}
		return 0;
	}
	case T_INT:
	case T_SIZE: {
		long long v = config_setting_get_int64(s);
		if (v < st->min || v > st->max) {
			config_error_at(c, s, errs, "%lld is out of range (%lld to %lld)", v, st->min, st->max);
			return -1;
		}
		if (st->type == T_SIZE)
			*(uint64_t *)field = (uint64_t)v;
		else
			*(int *)field = (int)v;
		return 0;
	}
	case T_STRLIST: {
		char ***dst = field;
		int *n = (int *)((char *)c + st->count);
		free_strv(dst, *n);
		*dst = strlist(s, n, false);
		return 0;
	}
	default:
		return 0;
	}
}

/* control_socket, absolute (control_path), from the spool; it must fit
 * a sockaddr_un. */
static void control_socket_resolve(struct config *c, struct buf *errs)
{
	const char *p = c->control_socket;
	char *abs = p[0] == '/' ? xstrdup(p) : xasprintf("%s/%s", c->spool, p);
	if (strlen(abs) >= sizeof ((struct sockaddr_un *)0)->sun_path)
		config_error_at(c, config_lookup(&c->cfg, "control_socket"), errs,
		                "%s: longer than a Unix socket path may be (%zu bytes)", abs,
		                sizeof ((struct sockaddr_un *)0)->sun_path - 1);
	c->control_path = abs;
}

char *config_control_path(const char *path)
{
	struct config *c = xcalloc(1, sizeof *c);
	c->refs = 1;
	config_init(&c->cfg);
	set_defaults(c);
	c->file = xstrdup(path);
	char *out = NULL;
	if (config_read_file(&c->cfg, path)) {
		const char *v;
		if (config_lookup_string(&c->cfg, "spool", &v)) {
			free(c->spool);
			c->spool = xstrdup(v);
		}
		if (config_lookup_string(&c->cfg, "control_socket", &v)) {
			free(c->control_socket);
			c->control_socket = xstrdup(v);
		}
		char *abs = absolute(c->spool);
		free(c->spool);
		c->spool = abs;
		struct buf errs = {0};
		control_socket_resolve(c, &errs);
		if (!errs.len)
			out = xstrdup(c->control_path);
		buf_free(&errs);
	}
	config_free(&c);
	return out;
}

struct config *config_load(const char *path, struct buf *errs)
{
	struct config *c = xcalloc(1, sizeof *c);
	c->refs = 1;
	size_t errs_before = errs->len;
	config_init(&c->cfg);
	set_defaults(c);
	c->file = xstrdup(path ? path : "(default)");
	int ok = path ? config_read_file(&c->cfg, path)
	              : config_read_string(&c->cfg, config_default_text);
	if (!ok) {
		if (config_error_type(&c->cfg) == CONFIG_ERR_FILE_IO)
			buf_addf(errs, "%s: cannot read: %s\n", c->file, strerror(errno));
		else
			buf_addf(errs, "%s:%d: syntax error: %s\n",
			         config_error_file(&c->cfg) ? config_error_file(&c->cfg) : c->file,
			         config_error_line(&c->cfg), config_error_text(&c->cfg));
		config_free(&c);
		return NULL;
	}
	config_setting_t *root = config_root_setting(&c->cfg);
	for (int i = 0; i < config_setting_length(root); i++) {
		config_setting_t *s = config_setting_get_elem(root, i);
		const char *name = config_setting_name(s);
		const struct setting *st = NULL;
		for (size_t k = 0; k < sizeof settings / sizeof settings[0]; k++)
			if (!strcmp(settings[k].name, name))
				st = &settings[k];
		if (!st) {
			config_error_at(c, s, errs, "unknown setting");
			continue;
		}
		(void)apply(c, st, s, errs);
	}
	listeners_resolve(c, errs);
	if (c->nlisteners == 0 && errs->len == errs_before)
		buf_addf(errs, "%s:0: listeners: at least one listener is required\n", c->file);
	if (c->retry_max < c->retry_initial)
		c->retry_max = c->retry_initial;
	if (c->relayhost)       /* relayhost_tls and _credentials apply to it only */
		relay_route_build(c);
	if (c->relayhost && c->relayhost_credentials && c->relayhost_tls &&
	    !strcmp(c->relayhost_tls, "none"))
		/* the smtp client sends credentials only under TLS: the mail
		 * would wait for a login that never happens until it expires */
		config_error_at(c, config_lookup(&c->cfg, "relayhost_credentials"), errs,
		                "credentials go only over TLS, and relayhost_tls is \"none\"");
	char *abs = absolute(c->spool);
	free(c->spool);
	c->spool = abs;
	control_socket_resolve(c, errs);
	if (*c->pickup_socket)
		c->pickup_path = c->pickup_socket[0] == '/' ? xstrdup(c->pickup_socket)
		                 : xasprintf("%s/%s", c->spool, c->pickup_socket);
	if (c->pickup_path && strlen(c->pickup_path) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
		config_setting_t *where = config_lookup(&c->cfg, "pickup_socket");
		if (where)
			config_error_at(c, where, errs, "the path %s is too long for a Unix socket (%zu "
			                "bytes at most)", c->pickup_path,
			                sizeof ((struct sockaddr_un *)0)->sun_path - 1);
		else
			buf_addf(errs, "%s:0: pickup_socket: the default path %s is too long for a Unix "
			         "socket (%zu bytes at most): set pickup_socket\n", c->file, c->pickup_path,
			         sizeof ((struct sockaddr_un *)0)->sun_path - 1);
	}
	c->module_path_conf = xstrdup(c->module_path ? c->module_path : PETREL_MODULEDIR);
	const char *envp = getenv("PETREL_MODULE_PATH");
	if (envp && *envp) {
		char *mp = c->module_path ? xasprintf("%s:%s", envp, c->module_path) : xstrdup(envp);
		free(c->module_path);
		c->module_path = mp;
	}
	if (!c->module_path)
		c->module_path = xstrdup(PETREL_MODULEDIR);
	if (errs->len != errs_before) {
		config_free(&c);
		return NULL;
	}
	return c;
}

static void free_strv(char ***v, int n)
{
	for (int i = 0; i < n; i++)
		free((*v)[i]);
	xfree(v);
}

struct config *config_ref(struct config *c)
{
	c->refs++;
	return c;
}

void config_copy_credentials(struct config *to, const struct config *from)
{
	const char *u = route_option(&from->relay_route, "auth_user");
	const char *p = route_option(&from->relay_route, "auth_password");
	if (u && p && to->relayhost && !route_option(&to->relay_route, "auth_user")) {
		route_opt_add(&to->relay_route, "auth_user", u);
		route_opt_add(&to->relay_route, "auth_password", p);
	}
}

void config_free(struct config **cp)
{
	struct config *c = *cp;
	if (!c)
		return;
	*cp = NULL;
	if (--c->refs > 0)
		return;
	for (int i = 0; i < c->nlisteners; i++) {
		free(c->listeners[i].listen);
		free(c->listeners[i].stage);
		free_strv(&c->listeners[i].filters, c->listeners[i].nfilters);
		free(c->listeners[i].tls_cert_file);
		free(c->listeners[i].tls_key_file);
	}
	free(c->listeners);
	free_strv(&c->domains, c->ndomains);
	free_strv(&c->filters, c->nfilters);
	free(c->relay);
	free(c->file);
	free(c->hostname);
	free(c->spool);
	free(c->pickup_socket);
	free(c->pickup_path);
	free(c->user);
	free(c->control_socket);
	free(c->control_path);
	free(c->router);
	free(c->module_path);
	free(c->module_path_conf);
	free(c->tls_cert_file);
	free(c->tls_key_file);
	free(c->auth_passwords);
	free(c->resolver);
	free(c->metrics_listen);
	for (int i = 0; i < c->nroutes; i++)
		route_clear(&c->routes[i]);
	free(c->routes);
	free(c->relayhost);
	free(c->relayhost_tls);
	free(c->relayhost_credentials);
	route_clear(&c->relay_route);
	config_destroy(&c->cfg);
	free(c);
	*cp = NULL;
}

bool config_is_local_domain(const struct config *c, const char *domain)
{
	for (int i = 0; i < c->ndomains; i++)
		if (!strcasecmp(c->domains[i], domain))
			return true;
	return false;
}

bool config_may_relay(const struct config *c, const struct sockaddr *sa)
{
	for (int i = 0; i < c->nrelay; i++)
		if (cidr_match(&c->relay[i], sa))
			return true;
	return false;
}

/* ---- petreld -n / -d / -p: the configuration as petrel.conf text ---- */

static void print_string(struct buf *o, const char *v)
{
	buf_adds(o, "\"");
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		switch (*p) {
		case '"': buf_adds(o, "\\\""); break;
		case '\\': buf_adds(o, "\\\\"); break;
		case '\n': buf_adds(o, "\\n"); break;
		case '\t': buf_adds(o, "\\t"); break;
		case '\r': buf_adds(o, "\\r"); break;
		case '\f': buf_adds(o, "\\f"); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				buf_addf(o, "\\x%02x", *p);
			else
				buf_addf(o, "%c", *p);
		}
	}
	buf_adds(o, "\"");
}

static void print_int(struct buf *o, long long v)
{
	buf_addf(o, v > INT_MAX || v < INT_MIN ? "%lldL" : "%lld", v);
}

void config_render(config_setting_t *s, int indent, struct buf *o)
{
	int n = config_setting_length(s);
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING: print_string(o, config_setting_get_string(s)); return;
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: print_int(o, config_setting_get_int64(s)); return;
	case CONFIG_TYPE_FLOAT: buf_addf(o, "%.17g", config_setting_get_float(s)); return;
	case CONFIG_TYPE_BOOL: buf_adds(o, config_setting_get_bool(s) ? "true" : "false"); return;
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST: {
		bool arr = config_setting_type(s) == CONFIG_TYPE_ARRAY;
		buf_adds(o, arr ? "[" : "(");
		for (int i = 0; i < n; i++) {
			buf_adds(o, i ? ", " : " ");
			config_render(config_setting_get_elem(s, i), indent, o);
		}
		buf_adds(o, n ? (arr ? " ]" : " )") : (arr ? "]" : ")"));
		return;
	}
	case CONFIG_TYPE_GROUP:
		buf_adds(o, "{");
		for (int i = 0; i < n; i++) {
			config_setting_t *m = config_setting_get_elem(s, i);
			buf_addf(o, " %s = ", config_setting_name(m));
			config_render(m, indent + 1, o);
			buf_adds(o, ";");
		}
		buf_adds(o, n ? " }" : "}");
		return;
	default:
		return;
	}
}

/* The value of top-level setting st in c, as petrel.conf text; false when
 * it is unset (a NULL string). */
static bool render_setting(const struct config *c, const struct setting *st, struct buf *o)
{
	/* a string with its own setter and a field (pickup_socket) shows the field */
	if (st->set && !(st->type == T_STRING && st->offset)) {
		config_setting_t *s = config_lookup(&c->cfg, st->name);
		if (s)
			config_render(s, 0, o);
		else if (st->type == T_LIST || st->type == T_GROUP || st->type == T_STRLIST)
			buf_adds(o, st->type == T_LIST ? "()" : st->type == T_GROUP ? "{}" : "[]");
		else
			return false;       /* an unset string or number: "# x is not set" */
		return true;
	}
	const void *field = (const char *)c + st->offset;
	switch (st->type) {
	case T_STRING: {
		const char *v = *(char *const *)field;
		if (st->offset == OFF(module_path))
			v = c->module_path_conf;
		if (!v)
			return false;
		print_string(o, v);
		return true;
	}
	case T_INT: print_int(o, *(const int *)field); return true;
	case T_SIZE: print_int(o, (long long)*(const uint64_t *)field); return true;
	case T_STRLIST: {
		char *const *v = *(char **const *)field;
		int n = *(const int *)((const char *)c + st->count);
		buf_adds(o, "[");
		for (int i = 0; i < n; i++) {
			buf_adds(o, i ? ", " : " ");
			print_string(o, v[i]);
		}
		buf_adds(o, n ? " ]" : "]");
		return true;
	}
	default:
		return true;
	}
}

void config_show(const struct config *c, enum config_show how, bool with_modules, struct buf *o)
{
	struct config d = {0};
	set_defaults(&d);
	d.module_path_conf = xstrdup(PETREL_MODULEDIR);
	config_init(&d.cfg);
	for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
		const struct setting *st = &settings[i];
		if (st->type == T_GROUP && !with_modules)
			continue;
		struct buf ev = {0}, dv = {0};
		bool eset = render_setting(c, st, &ev), dset = render_setting(&d, st, &dv);
		const char *v = how == CONFIG_SHOW_DEFAULTS ? dv.data : ev.data;
		bool set = how == CONFIG_SHOW_DEFAULTS ? dset : eset;
		bool differs = eset != dset || (eset && strcmp(ev.data, dv.data));
		if (how != CONFIG_SHOW_NONDEFAULT || differs) {
			if (set)
				buf_addf(o, "%s = %s;\n", st->name, v);
			else
				buf_addf(o, "# %s is not set\n", st->name);
		}
		buf_free(&ev);
		buf_free(&dv);
	}
	config_destroy(&d.cfg);
	d.cfg = (config_t){0};
	free(d.hostname);
	free(d.spool);
	free(d.control_socket);
	free(d.pickup_socket);
	free(d.router);
	free(d.module_path_conf);
}
