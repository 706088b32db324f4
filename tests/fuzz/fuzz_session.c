/*
 * fuzz_session.c - libFuzzer harness for the whole SMTP server session:
 * the bytes a client sends, from the first command after the greeting to
 * the end, through the real core (smtp_server.c, smtp_data.c,
 * smtp_auth.c, filter_chain.c, the spool, the queue) and the real
 * modules loaded from FUZZ_MODULE_PATH: the mta stage, the router (with
 * a mailboxes table and aliases), the regex filter (a rules file with
 * every target and most actions), the maildir transport, and the test
 * module "slow" (tests/modules/slow.c), whose rcpt hook suspends the
 * session for 1 ms on a timer when the recipient is slow@fuzz.test: what
 * the client pipelines or how it leaves while a hook is pending.
 *
 * One daemon per process, set up once as main.c does (configuration file,
 * modules, password file, spool, workers, queue) in a temporary directory
 * (under /dev/shm when TMPDIR is not set: commits and maildir syncs on
 * tmpfs cost little).  The listeners are not bound: each input is one
 * connection, a socketpair whose server end goes to session_accept() as
 * accept() would hand it over; the harness is the client on the other
 * end, in the same event loop, and the loop runs until the input is
 * consumed, the replies are read, the session is gone and the queue has
 * delivered what was accepted.  Then the maildirs are emptied, the AUTH
 * throttle forgotten: the next input meets the same daemon state.
 *
 * Input: byte 0 picks the listener and the client's manners:
 *   bit 0  AUTH PLAIN/LOGIN offered (in clear text, or only under TLS
 *          with bit 5 or 6)
 *   bit 1  the filter chain regex + slow (else none)
 *   bit 2  a slow reader: it reads its replies only when its own writes
 *          block, over small socket buffers (the server's back-pressure)
 *   bit 3  the client drops the connection as soon as everything is
 *          written, without waiting for the replies
 *   bit 4  at most a line per write, as a client that does not pipeline
 *   bit 5  the listener offers STARTTLS: after a 220 to STARTTLS the
 *          client (OpenSSL) shakes hands and sends the rest under TLS
 *   bit 6  implicit TLS: the handshake before the greeting
 *   bit 7  the daemon shuts down (SIGTERM's sessions_shutdown) once the
 *          server has read all the client wrote: the session gets 421,
 *          a pending hook is given up, a commit finishes first
 * Bytes 1 and 2 are two chunk sizes (0: all at once), used in turn, so
 * that the session's reads are split anywhere (a client that is not slow
 * writes the next chunk only once the server has read the previous one
 * and answered).  The rest is what the client sends.  The password file
 * has user "fuzz", password "fuzzpass" (AUTH PLAIN AGZ1enoAZnV6enBhc3M=).
 *
 * Checked, per input:
 *   - no sanitizer report and no leak (every session, transaction and
 *     queued message is freed when the input ends);
 *   - every reply line is "DDD SP/- text CR LF", DDD in 2xx..5xx, no
 *     control octet inside, at most 512 octets; the lines of a multi-line
 *     reply share their code; the first reply is the greeting; nothing
 *     comes after a 221 or 421 and the connection is closed after it;
 *   - the replies stay within a bound of the input's size, the session's
 *     input and output buffers within theirs;
 *   - once the client is done: no session, commit, delivery or worker job
 *     left and the queue empty (a message accepted with 250 is delivered,
 *     never left deferred), at least one maildir file per message
 *     accepted, no client counted; every 64 inputs, no more descriptors
 *     open than after the first input (pipes and /dev/null aside);
 *   - every log line is formatted (the sanitizers check the arguments)
 *     and holds no control octet (client bytes reach the log escaped);
 *     none says "but no destination" (smtp_data.c: recipients whose
 *     destinations the bookkeeping lost, refused with 451) or "no
 *     recipients left" (no filter configured here removes every
 *     recipient: the message was acknowledged and dropped).
 * FUZZ_SESSION_LOG=1 prints the daemon's log and the dialogue.
 *
 * The limits are set low (message_size_limit 8192, header_size_limit
 * 1024, header_count_limit 20, hopcount_limit 5, hard_error_limit 20):
 * inputs of libFuzzer's default 4096 octets reach each of them.
 *
 * Not covered: a TLS handshake with mutated bytes inside it (the client
 * is OpenSSL), greet_pause and the tarpit (timers of a second or more:
 * greet_pause = 0, error_sleep_time = 0), the timeouts.
 */
#include "fuzz_common.h"

#include "auth.h"
#include "auth_throttle.h"
#include "config.h"
#include "generation.h"
#include "log.h"
#include "module_load.h"
#include "queue.h"
#include "server.h"
#include "session.h"
#include "spool.h"
#include "tls.h"
#include "worker.h"

#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#ifndef FUZZ_MODULE_PATH
#define FUZZ_MODULE_PATH ""
#endif

#define NLISTENERS 12
#define REPLY_LINE_MAX 512
#define WAIT_MS_MAX 8000         /* the session must be done within this (libFuzzer -timeout=10) */

/* --- logging: the core's log.c, replaced (the archive member is then not
 * linked): every line is formatted and checked, printed only on request --- */

static int log_print;

void log_open(const char *ident, int foreground)
{
	(void)ident;
	(void)foreground;
}

void log_vmsg(enum log_grade g, const char *fmt, va_list ap)
{
	char line[2048];
	vsnprintf(line, sizeof line, fmt, ap);
	if (log_print)
		fprintf(stderr, "fuzz-session: log %d: %s\n", (int)g, line);
	for (const unsigned char *p = (const unsigned char *)line; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			fuzz_fail("control octet 0x%02x in a log line: %s", *p, line);
	/* the core's own word for a message with recipients and no destination;
	 * and no filter here removes every recipient (a redirect adds one
	 * first), so a message acknowledged and dropped as having "no
	 * recipients left" was lost.  Matched right after the queue id that
	 * starts the line: client bytes later in it (a HELO name) must not. */
	const char *p = line + strspn(line, "0123456789ABCDEF");
	int nrcpt;
	char c;
	if (p > line && (!strncmp(p, ": discard: from [?]:0: no recipients left;", 42) ||
	                 (sscanf(p, ": %d recipient(s) but no destinatio%c", &nrcpt, &c) == 2 && c == 'n')))
		fuzz_fail("%s", line);
}

#define LOG_FN(name, grade) \
	void name(const char *fmt, ...) \
	{ \
		va_list ap; \
		va_start(ap, fmt); \
		log_vmsg(grade, fmt, ap); \
		va_end(ap); \
	}

LOG_FN(log_info, LOG_GRADE_INFO)
LOG_FN(log_warn, LOG_GRADE_WARN)
LOG_FN(log_error, LOG_GRADE_ERROR)

void log_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fuzz-session: fatal: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

void log_panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fuzz-session: panic: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

/* --- the daemon, set up once --- */

static struct server srv_storage, *srv = &srv_storage;
static char maildirs[4096];
static struct ev_timer stop_timer;
static int fds_baseline = -1;
static SSL_CTX *client_ctx;
static unsigned long long ninputs;

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static const char rules[] =
	"client /^never-matches$/ reject\n"
	"helo /^reject\\.example$/ reject 550 5.7.1 HELO refused\n"
	"helo /^temp\\.example$/ tempfail\n"
	"helo /^discard\\.example$/ discard\n"
	"sender /^spam@/ reject\n"
	"sender /^later@/ tempfail 451 4.7.1 Sender later\n"
	"sender /^gone@/ discard\n"
	"recipient /^nobody@/ reject 550 5.1.1 No such user here\n"
	"recipient /^redirect@fuzz\\.test$/ redirect alice@fuzz.test\n"
	"recipient /^lost@/ redirect unknown@fuzz.test\n"
	"header Subject /viagra/i reject 550 5.7.1 No pharmacy spam\n"
	"header Subject /invoice/i add X-Category: billing\n"
	"header Subject /later/ tempfail\n"
	"header X-Mailer /Blaster/ remove\n"
	"header * /^X-Spam-Flag:\\s*yes$/i discard\n"
	"header From /=\\?utf-8\\?/i log encoded From\n"
	"header Received /evil/ remove\n"
	"body /^BODYREJECT/ reject 550 5.7.1 Body refused\n"
	"body /redirectme/ redirect bob@fuzz.test\n"
	"body /gr\xc3\xbc\xc3\x9f""e/i log greeting\n"
	"mime-type /^application\\/x-msdownload$/ discard\n"
	"mime-type /^message\\/rfc822$/ log attached message\n"
	"filename /\\.(exe|scr)$/i reject 550 5.7.1 Executable attachments are refused\n";

/* A self-signed P-256 key pair for the STARTTLS listeners (an EC key:
 * a handshake costs little). */
static void tls_files(const char *cert, const char *key)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	if (!pk || !x) {
		fprintf(stderr, "fuzz-session: cannot make a key\n");
		exit(1);
	}
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400 * 365);
	X509_set_pubkey(x, pk);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"mx.fuzz.test", -1, -1, 0);
	X509_set_issuer_name(x, n);
	FILE *fc = fopen(cert, "w"), *fk = fopen(key, "w");
	if (!X509_sign(x, pk, EVP_sha256()) || !fc || !fk || !PEM_write_X509(fc, x) ||
	    !PEM_write_PrivateKey(fk, pk, NULL, NULL, 0, NULL, NULL) || fclose(fc) || fclose(fk)) {
		fprintf(stderr, "fuzz-session: cannot write the key pair\n");
		exit(1);
	}
	X509_free(x);
	EVP_PKEY_free(pk);
}

static void harness_config_write(const char *dir, const char *conf)
{
	char *spool = xasprintf("%s/spool", dir);
	char *passwd = xasprintf("%s/passwd", dir);
	char *rulesf = xasprintf("%s/regex.rules", dir);
	char *cert = xasprintf("%s/cert.pem", dir), *key = xasprintf("%s/key.pem", dir);
	tls_files(cert, key);
	snprintf(maildirs, sizeof maildirs, "%s/mail", dir);
	if (mkdir(maildirs, 0700) < 0) {
		perror(maildirs);
		exit(1);
	}
	/* SHA-512 with the fewest rounds: a login costs well under a millisecond */
	struct crypt_data cd = {0};
	const char *h = crypt_r("fuzzpass", "$6$rounds=1000$fuzzsaltfuzzsalt$", &cd);
	if (!h || h[0] != '$') {
		fprintf(stderr, "fuzz-session: crypt_r cannot make a $6$ hash\n");
		exit(1);
	}
	char *pw = xasprintf("# the harness's one user\nfuzz:%s\nother:%s\n", h, h);
	write_file(passwd, pw);
	write_file(rulesf, rules);
	char *text = xasprintf(
		"hostname = \"mx.fuzz.test\";\n"
		"spool = \"%s\";\n"
		"module_path = \"%s\";\n"
		"domains = [ \"fuzz.test\", \"example.org\" ];\n"
		"relay_networks = [ ];\n"
		"listeners = (\n"
		"  { listen = \"127.0.0.1:1\"; stage = \"mta\"; filters = [ ]; },\n"
		"  { listen = \"127.0.0.1:2\"; stage = \"mta\"; filters = [ ]; auth = true; auth_cleartext = true; },\n"
		"  { listen = \"127.0.0.1:3\"; stage = \"mta\"; filters = [ \"regex\", \"slow\" ]; },\n"
		"  { listen = \"127.0.0.1:4\"; stage = \"mta\"; filters = [ \"regex\", \"slow\" ]; auth = true; auth_cleartext = true; },\n"
		"  { listen = \"127.0.0.1:5\"; stage = \"mta\"; filters = [ ]; tls = \"starttls\"; },\n"
		"  { listen = \"127.0.0.1:6\"; stage = \"mta\"; filters = [ ]; tls = \"starttls\"; auth = true; },\n"
		"  { listen = \"127.0.0.1:7\"; stage = \"mta\"; filters = [ \"regex\", \"slow\" ]; tls = \"starttls\"; },\n"
		"  { listen = \"127.0.0.1:8\"; stage = \"mta\"; filters = [ \"regex\", \"slow\" ]; tls = \"starttls\"; auth = true; },\n"
		"  { listen = \"127.0.0.1:9\"; stage = \"mta\"; filters = [ ]; tls = \"implicit\"; },\n"
		"  { listen = \"127.0.0.1:10\"; stage = \"mta\"; filters = [ ]; tls = \"implicit\"; auth = true; },\n"
		"  { listen = \"127.0.0.1:11\"; stage = \"mta\"; filters = [ \"regex\", \"slow\" ]; tls = \"implicit\"; },\n"
		"  { listen = \"127.0.0.1:12\"; stage = \"mta\"; filters = [ \"regex\", \"slow\" ]; tls = \"implicit\"; auth = true; }\n"
		");\n"
		"tls_cert_file = \"%s\";\n"
		"tls_key_file = \"%s\";\n"
		"filters = [ \"regex\", \"slow\" ];\n"
		"auth_passwords = \"%s\";\n"
		"auth_failure_limit = 3;\n"
		"auth_client_failure_limit = 5;\n"
		"auth_client_concurrency = 1;\n"
		"message_size_limit = 8192;\n"
		"recipient_limit = 100;\n"
		"hopcount_limit = 5;\n"
		"header_size_limit = 1024;\n"
		"header_count_limit = 20;\n"
		"soft_error_limit = 10;\n"
		"hard_error_limit = 20;\n"
		"error_sleep_time = 0;\n"
		"junk_command_limit = 20;\n"
		"greet_pause = 0;\n"
		"client_connection_limit = 2;\n"
		"min_data_rate = 0;\n"
		"delivery_workers = 2;\n"
		"filter_workers = 1;\n"
		"max_connections = 16;\n"
		"modules = {\n"
		"  maildir = { root = \"%s/%%d/%%u\"; };\n"
		"  router = {\n"
		"    mailboxes = [ \"alice@fuzz.test\", \"bob@fuzz.test\", \"postmaster@fuzz.test\",\n"
		"                  \"redirect@fuzz.test\", \"lost@fuzz.test\", \"nobody@fuzz.test\",\n"
		"                  \"slow@fuzz.test\" ];\n"
		"    aliases = [ \"team@fuzz.test: alice@fuzz.test, bob@fuzz.test\",\n"
		"                \"loop@fuzz.test: loop2@fuzz.test\", \"loop2@fuzz.test: loop@fuzz.test\",\n"
		"                \"out@fuzz.test: someone@remote.example\" ];\n"
		"    local_transport = \"maildir\";\n"
		"    relay_transport = \"maildir\";\n"     /* no network: relayed mail stays here */
		"  };\n"
		"  slow = { at = \"rcpt\"; delay_ms = 1; only_rcpt = \"slow@fuzz.test\"; };\n"
		"  regex = { rules = \"%s\"; body_size_limit = 2048; };\n"
		"};\n", spool, FUZZ_MODULE_PATH, cert, key, passwd, maildirs, rulesf);
	write_file(conf, text);
	free(text);
	free(pw);
	free(spool);
	free(passwd);
	free(rulesf);
	free(cert);
	free(key);
}

static void on_stop(struct ev_loop *loop, void *arg)
{
	(void)arg;
	ev_stop(loop);
}

/* Run the loop for one round of events, waiting at most ms for one. */
static void run_for(uint64_t ms)
{
	ev_timer_start(srv->loop, &stop_timer, ms);
	ev_run(srv->loop);
	if (ev_timer_armed(&stop_timer))
		ev_timer_stop(srv->loop, &stop_timer);
}

/* Descriptors open now, with show each printed with what it is.  Pipes
 * and /dev/null are not counted: the sanitizers' symbolizer opens them
 * when a report or a new function is printed. */
static int fds_open(bool show)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		char path[300], target[512];
		snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
		ssize_t k = readlink(path, target, sizeof target - 1);
		if (k < 0)
			continue;
		target[k] = 0;
		if (!strncmp(target, "pipe:", 5) || !strcmp(target, "/dev/null"))
			continue;
		n++;
		if (show)
			fprintf(stderr, "fuzz-session: fd %s: %s\n", e->d_name, target);
	}
	closedir(d);
	return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *p = getenv("FUZZ_SESSION_LOG");
	log_print = p && *p == '1';
	signal(SIGPIPE, SIG_IGN);
	struct stat st;
	if (!getenv("TMPDIR") && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
	    access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 1);
	const char *dir = fuzz_tmpdir();
	char *conf = xasprintf("%s/petrel.conf", dir);
	harness_config_write(dir, conf);
	struct buf errs = {0};
	srv->cfg = config_load(conf, &errs);
	free(conf);
	if (!srv->cfg) {
		fprintf(stderr, "fuzz-session: configuration: %s\n", errs.data ? errs.data : "?");
		exit(1);
	}
	if (srv->cfg->nlisteners != NLISTENERS) {
		fprintf(stderr, "fuzz-session: %d listeners configured, %d expected\n",
		        srv->cfg->nlisteners, NLISTENERS);
		exit(1);
	}
	srv->loop = ev_loop_new();
	host_bind(srv);
	/* what petreld does at start: one generation (modules, chains, TLS key
	 * pairs, passwords, listener views); the listeners are never bound,
	 * the harness hands sessions over */
	struct config *cfg = srv->cfg;
	srv->cfg = NULL;
	srv->gen = gen_build(srv, cfg, NULL, false, &errs);
	if (!srv->gen || errs.len) {
		fprintf(stderr, "fuzz-session: modules, key pairs, passwords (module_path %s):\n%s",
		        FUZZ_MODULE_PATH, errs.data ? errs.data : "?\n");
		exit(1);
	}
	srv->cfg = srv->gen->cfg;
	client_ctx = SSL_CTX_new(TLS_client_method());
	if (!client_ctx) {
		fprintf(stderr, "fuzz-session: SSL_CTX_new failed\n");
		exit(1);
	}
	SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(client_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	srv->spool = spool_open(srv->cfg->spool, srv->loop, &errs);
	if (!srv->spool) {
		fprintf(stderr, "fuzz-session: spool: %s\n", errs.data ? errs.data : "?");
		exit(1);
	}
	srv->workers = workers_start(srv->loop, srv->cfg->delivery_workers);
	srv->filter_workers = workers_start(srv->loop, srv->cfg->filter_workers);
	srv->queue = queue_new(srv);
	struct qmsg **rec;
	int nrec;
	if (spool_recover(srv->spool, &rec, &nrec, &errs) < 0 || nrec) {
		fprintf(stderr, "fuzz-session: a new spool holds messages: %s\n", errs.data ? errs.data : "");
		exit(1);
	}
	free(rec);
	buf_free(&errs);
	ev_timer_init(&stop_timer, on_stop, NULL);
	return 0;
}

/* --- the client end --- */

struct client {
	int fd;
	const uint8_t *p;        /* what is left to send */
	size_t n;
	size_t chunk[2];         /* chunk sizes used in turn, 0: everything */
	int turn;
	bool slow;               /* reads only when its writes block */
	bool hangup;             /* closes once everything is written */
	bool lines;              /* a chunk is a line: one command, then the reply */
	bool shutdown;           /* sessions_shutdown() once everything is written */
	bool eof;                /* the server closed */
	struct buf in;           /* replies received */
	size_t checked;          /* ... checked up to here */
	bool greeted;
	bool greeted_once;       /* the greeting's last line was seen */
	int tls;                 /* 0 clear text, 1 a 220 to STARTTLS came, 2 handshake, 3 TLS */
	SSL *ssl;
	bool closing;            /* a 221 or 421 was seen */
	char cont_code[4];       /* the code of an unfinished multi-line reply */
	size_t limit;            /* bound on the reply octets */
};

static void check_line(struct client *c, const char *l, size_t n)
{
	if (log_print)
		fprintf(stderr, "fuzz-session: S: %.*s\n", (int)(n > 2 ? n - 2 : n), l);
	if (c->closing)
		fuzz_fail("a reply after 221/421: %.*s", (int)n, l);
	if (n < 6 || l[n - 2] != '\r')
		fuzz_fail("reply line not ending in CR LF or too short: %.*s", (int)n, l);
	if (n > REPLY_LINE_MAX)
		fuzz_fail("reply line of %zu octets (RFC 5321: 512)", n);
	if (l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' ||
	    (l[3] != ' ' && l[3] != '-'))
		fuzz_fail("malformed reply line: %.*s", (int)n, l);
	for (size_t i = 4; i < n - 2; i++) {
		unsigned char ch = (unsigned char)l[i];
		if (ch < 0x20 || ch == 0x7f)
			fuzz_fail("control octet 0x%02x in a reply: %.*s", ch, (int)n - 2, l);
	}
	if (c->cont_code[0] && memcmp(c->cont_code, l, 3))
		fuzz_fail("multi-line reply %.3s continued with %.3s", c->cont_code, l);
	if (!c->greeted) {
		c->greeted = true;
		if (memcmp(l, "220", 3) && memcmp(l, "421", 3) && memcmp(l, "554", 3))
			fuzz_fail("the first reply is not a greeting: %.*s", (int)n - 2, l);
	}
	if (l[3] == '-') {
		memcpy(c->cont_code, l, 3);
		c->cont_code[3] = 0;
		return;
	}
	c->cont_code[0] = 0;
	if (!memcmp(l, "221", 3) || !memcmp(l, "421", 3))
		c->closing = true;
	else if (!memcmp(l, "220", 3) && c->greeted_once && !c->tls)
		c->tls = 1;              /* the answer to STARTTLS */
	c->greeted_once = true;
}

static void check_replies(struct client *c)
{
	if (c->in.len > c->limit)
		fuzz_fail("%zu octets of replies for %zu sent", c->in.len, c->limit);
	for (;;) {
		const char *s = c->in.data + c->checked;
		const char *lf = memchr(s, '\n', c->in.len - c->checked);
		if (!lf)
			return;
		size_t n = (size_t)(lf - s) + 1;
		check_line(c, s, n);
		c->checked += n;
	}
}

/* Read what the server sent, until it has nothing more for now. */
static void client_read(struct client *c)
{
	while (!c->eof && c->tls != 1 && c->tls != 2) {
		buf_reserve(&c->in, 4096);
		ssize_t n;
		if (c->ssl) {
			int r = SSL_read(c->ssl, c->in.data + c->in.len, 4096);
			int e = r > 0 ? 0 : SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return;
			ERR_clear_error();
			n = r > 0 ? r : 0;
		} else {
			n = read(c->fd, c->in.data + c->in.len, 4096);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
		}
		if (n <= 0) {            /* closed, or reset */
			c->eof = true;
			return;
		}
		c->in.len += (size_t)n;
		check_replies(c);
	}
}

/* The server said 220 to STARTTLS: the handshake, one step at a time.
 * What the client wrote after STARTTLS before the 220 was thrown away by
 * the server; what it sends from now on goes under TLS. */
static void client_tls(struct client *c)
{
	if (c->tls == 1) {
		c->ssl = SSL_new(client_ctx);
		if (!c->ssl || !SSL_set_fd(c->ssl, c->fd))
			fuzz_fail("SSL_new failed");
		SSL_set_connect_state(c->ssl);
		c->tls = 2;
	}
	if (c->tls != 2)
		return;
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->tls = 3;
		return;
	}
	int e = SSL_get_error(c->ssl, r);
	ERR_clear_error();
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
		c->tls = 3;              /* failed: the server closes, as it should */
		c->eof = true;
	}
}

/* Write the next chunk; returns the octets written, -1 when it blocks. */
static ssize_t client_write(struct client *c)
{
	size_t want = c->chunk[c->turn] ? c->chunk[c->turn] : c->n;
	if (c->lines) {
		const uint8_t *lf = memchr(c->p, '\n', c->n);
		size_t line = lf ? (size_t)(lf - c->p) + 1 : c->n;
		if (line < want)
			want = line;
	}
	if (want > c->n)
		want = c->n;
	ssize_t w;
	if (c->tls == 1 || c->tls == 2)
		return -1;               /* nothing goes out during the handshake */
	if (c->ssl) {
		int r = SSL_write(c->ssl, c->p, (int)want);
		int e = r > 0 ? 0 : SSL_get_error(c->ssl, r);
		ERR_clear_error();
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return -1;
		w = r > 0 ? r : -1;
		if (w < 0)
			errno = EPIPE;
	} else {
		w = send(c->fd, c->p, want, MSG_NOSIGNAL);
	}
	if (w < 0) {
		if (errno == EAGAIN)
			return -1;
		c->n = 0;                /* the server is gone: the rest is not sent */
		return 0;
	}
	if (log_print)
		fprintf(stderr, "fuzz-session: C: %.*s\n", (int)w, (const char *)c->p);
	c->p += w;
	c->n -= (size_t)w;
	c->turn ^= 1;
	return w;
}

/* The server has read everything the client sent. */
static bool server_read_all(const struct petrel_session *s)
{
	int unread = 0;
	if (s && s->fd >= 0 && ioctl(s->fd, FIONREAD, &unread) < 0)
		fuzz_fail("FIONREAD: %s", strerror(errno));
	return unread == 0;
}

/* The server has nothing to do but wait for the client. */
static bool server_idle(const struct petrel_session *s)
{
	if (!s || s->fd < 0)
		return true;
	int unread = 0;
	if (ioctl(s->fd, FIONREAD, &unread) < 0)
		fuzz_fail("FIONREAD: %s", strerror(errno));
	return unread == 0 && !s->pending && !s->auth_job && s->state != S_COMMIT &&
	       s->out.len == 0 && !s->tarpit;
}

static bool daemon_quiet(void)
{
	return srv->nsessions == 0 && spool_commits_pending(srv->spool) == 0 &&
	       queue_active(srv->queue) == 0 && queue_size(srv->queue) == 0 &&
	       workers_pending(srv->workers) == 0 && workers_pending(srv->filter_workers) == 0;
}

static int nnew;

static int count_new(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)f;
	const char *slash = strrchr(path, '/');
	if (flag == FTW_F && slash && slash - path >= 4 && !memcmp(slash - 4, "/new", 4))
		nnew++;
	return 0;
}

/* Messages delivered into the maildirs (files in some new/). */
static int delivered(void)
{
	nnew = 0;
	nftw(maildirs, count_new, 16, FTW_PHYS);
	return nnew;
}

static void check_bounds(const struct petrel_session *s, size_t insize)
{
	if (!s)
		return;
	/* INPUT_PAUSE plus one read's worth (4 x READ_CHUNK) */
	if (s->in.len > 256 * 1024 + 4 * 16384)
		fuzz_fail("session input buffer at %zu octets", s->in.len);
	if (s->out.len > 64 * 1024 + 16 * 1024 + insize * 64)
		fuzz_fail("session output buffer at %zu octets", s->out.len);
}

static void session_run(struct client *c, int listener, size_t insize)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		fuzz_fail("socketpair: %s", strerror(errno));
	if (c->slow) {
		int small = 2048;
		(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
		(void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
	}
	c->fd = sv[1];
	session_accept(srv, &srv->gen->listeners[listener], sv[0]);
	uint64_t start = ev_now_ms();
	for (;;) {
		struct petrel_session *s = srv->sessions;
		check_bounds(s, insize);
		bool wrote = false, blocked = false;
		if (!c->slow)
			client_read(c);
		client_tls(c);
		if (c->n && !c->eof && (c->slow || server_idle(s))) {
			ssize_t w = client_write(c);
			wrote = w > 0;
			blocked = w < 0;
		}
		if (c->shutdown && !c->n && server_read_all(srv->sessions)) {
			sessions_shutdown(srv);  /* as at SIGTERM, the daemon going on */
			c->shutdown = false;
			s = srv->sessions;       /* it may have closed (freed) the session */
		}
		if (!c->slow || blocked || !c->n)
			client_read(c);
		if (c->eof)
			break;
		if (!c->n && c->hangup)
			break;
		if (!c->n && server_idle(s) && c->tls != 1 && c->tls != 2) {
			client_read(c);
			if (server_idle(srv->sessions))
				break;           /* all said, all answered: the client leaves */
		}
		if (ev_now_ms() - start > WAIT_MS_MAX)
			fuzz_fail("the session is not done after %d ms (state %d, %zu octets unsent)",
			          WAIT_MS_MAX, s ? (int)s->state : -1, c->n);
		/* no wait while the client has something to do */
		run_for(wrote || c->tls == 2 || (c->n && !blocked) ? 0 : 1);
	}
	if (c->checked != c->in.len && !c->hangup)
		fuzz_fail("the replies end inside a line: %.*s", (int)(c->in.len - c->checked),
		          c->in.data + c->checked);
	if (c->closing && !c->eof && !c->hangup) {
		/* after 221/421 the server closes: give it a round */
		for (int i = 0; i < 100 && !c->eof; i++) {
			run_for(1);
			client_read(c);
		}
		if (!c->eof)
			fuzz_fail("the connection stays open after 221/421");
	}
	if (c->ssl)
		SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	c->fd = -1;
	uint64_t t0 = ev_now_ms();
	while (!daemon_quiet()) {
		if (ev_now_ms() - t0 > WAIT_MS_MAX)
			fuzz_fail("the daemon is not quiet %d ms after the client left: %d sessions, "
			          "%d commits, %d deliveries, %d queued, %d+%d worker jobs", WAIT_MS_MAX,
			          srv->nsessions, spool_commits_pending(srv->spool), queue_active(srv->queue),
			          queue_size(srv->queue), workers_pending(srv->workers),
			          workers_pending(srv->filter_workers));
		run_for(1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	struct client c = {
		.fd = -1,
		.p = data + 3,
		.n = size - 3,
		.chunk = { data[1], data[2] },
		.slow = data[0] & 4,
		.hangup = data[0] & 8,
		.lines = data[0] & 16,
		.shutdown = data[0] & 128,
		.limit = 4096 + (size - 3) * 128,
	};
	unsigned long long accepted = srv->counter_accepted;
	/* listeners: 0-3 clear text, 4-7 STARTTLS, 8-11 implicit TLS */
	c.tls = data[0] & 64 ? 1 : 0;        /* implicit: the handshake first */
	session_run(&c, (data[0] & 3) + (data[0] & 64 ? 8 : data[0] & 32 ? 4 : 0), size);
	buf_free(&c.in);
	/* what was acknowledged is delivered: each accepted message has a
	 * recipient, and any failure would bounce into the sender's maildir */
	int nd = delivered();
	if ((unsigned long long)nd < srv->counter_accepted - accepted)
		fuzz_fail("%llu messages accepted, %d delivered", srv->counter_accepted - accepted, nd);
	/* the next input meets the same daemon */
	auth_throttle_free(&srv->auth_throttle);
	if (srv->clients.n)
		fuzz_fail("%zu clients still counted (client_connection_limit)", srv->clients.n);
	fuzz_rm_under(maildirs);
	int nfd = (++ninputs % 64) == 1 || fds_baseline < 0 ? fds_open(false) : -2;
	if (fds_baseline < 0) {
		fds_baseline = nfd;
	} else if (nfd > fds_baseline) {
		fds_open(true);
		fuzz_fail("%d descriptors open, %d after the first input", nfd, fds_baseline);
	}
	return 0;
}
