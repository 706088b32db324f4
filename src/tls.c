/*
 * tls.c - the OpenSSL glue of tls.h.
 *
 * OpenSSL's error queue is per thread and only the loop thread uses TLS:
 * each operation clears it first, and on failure turns its first entry
 * (or errno) into the connection's error text.
 */
#include "tls.h"
#include "mem.h"
#include "stats.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct tls_server {
	SSL_CTX *ctx;
};

struct tls_conn {
	SSL *ssl;
	bool established;
	char error[160];
};

/* The first queued OpenSSL error as short text, or fallback. */
static void ssl_error_text(char *buf, size_t len, const char *fallback)
{
	unsigned long e = ERR_get_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;
	if (reason)
		snprintf(buf, len, "%s", reason);
	else if (e)
		snprintf(buf, len, "OpenSSL error %#lx", e);
	else
		snprintf(buf, len, "%s", fallback);
	ERR_clear_error();
}

/* OpenSSL's text for a missing file is vague: say it with errno. */
static bool file_unreadable(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return true;
	}
	fclose(f);
	return false;
}

int tls_server_new(const char *cert_file, const char *key_file, struct tls_server **out,
                   const char **bad_file, char *err, size_t errlen)
{
	*bad_file = cert_file;
	if (file_unreadable(cert_file, err, errlen))
		return -1;
	*bad_file = key_file;
	if (file_unreadable(key_file, err, errlen))
		return -1;
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ssl_error_text(err, errlen, "cannot create a TLS context");
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* No compression (CRIME), no renegotiation (a client-driven CPU sink),
	 * our cipher order.  A client that closes without close_notify has
	 * just left: SMTP frames its own data (CRLF.CRLF), so a truncation
	 * is seen anyway, and it is logged as a lost connection. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* Replies are written from a buffer that grows and moves between
	 * retries; a short write is fine.  Idle sessions hold no buffers:
	 * OpenSSL gives back its 16 KiB record buffers between records. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                 SSL_MODE_RELEASE_BUFFERS);
	static const unsigned char sid_ctx[] = "petrel";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
	const char *what = NULL;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		what = "not a PEM certificate";
		*bad_file = cert_file;
	} else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		what = "not a PEM private key";
	} else if (SSL_CTX_check_private_key(ctx) != 1) {
		what = "the key does not match the certificate";
	}
	if (what) {
		char why[160];
		ssl_error_text(why, sizeof why, "");
		snprintf(err, errlen, "%s: %s%s%s%s", *bad_file, what, why[0] ? " (" : "", why,
		         why[0] ? ")" : "");
		SSL_CTX_free(ctx);
		return -1;
	}
	*out = xcalloc(1, sizeof **out);
	(*out)->ctx = ctx;
	return 0;
}

void tls_server_free(struct tls_server **ts)
{
	if (!*ts)
		return;
	SSL_CTX_free((*ts)->ctx);
	xfree(ts);
}

struct tls_conn *tls_conn_new(struct tls_server *ts, int fd)
{
	ERR_clear_error();
	SSL *ssl = SSL_new(ts->ctx);
	if (!ssl || SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		ERR_clear_error();
		return NULL;
	}
	SSL_set_accept_state(ssl);
	struct tls_conn *c = xcalloc(1, sizeof *c);
	c->ssl = ssl;
	return c;
}

void tls_conn_free(struct tls_conn **cp)
{
	struct tls_conn *c = *cp;
	if (!c)
		return;
	if (c->established) {
		/* one try, never waiting: the socket is closed right after */
		ERR_clear_error();
		(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	SSL_free(c->ssl);
	xfree(cp);
}

/* Map the result r of an SSL call to TLS_WANT_* / TLS_FAILED / 0 (closed). */
static int ssl_result(struct tls_conn *c, int r)
{
	int saved = errno;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		snprintf(c->error, sizeof c->error, "closed by the client");
		return 0;
	case SSL_ERROR_SYSCALL:
		c->established = false;      /* no close_notify after a fatal error */
		if (ERR_peek_error())
			ssl_error_text(c->error, sizeof c->error, "");
		else
			snprintf(c->error, sizeof c->error, "%s",
			         saved ? strerror(saved) : "connection closed by the client");
		return TLS_FAILED;
	default:
		c->established = false;
		ssl_error_text(c->error, sizeof c->error, "TLS protocol error");
		return TLS_FAILED;
	}
}

int tls_handshake(struct tls_conn *c)
{
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->established = true;
		stats_tls_handshake(true);
		return 1;
	}
	r = ssl_result(c, r);
	if (r == 0) {       /* close_notify in the middle of a handshake */
		snprintf(c->error, sizeof c->error, "closed by the client during the handshake");
		r = TLS_FAILED;
	}
	if (r == TLS_FAILED)
		stats_tls_handshake(false);
	return r;
}

ssize_t tls_read(struct tls_conn *c, void *buf, size_t len)
{
	size_t n = 0;
	ERR_clear_error();
	errno = 0;
	int r = SSL_read_ex(c->ssl, buf, len, &n);
	if (r == 1)
		return (ssize_t)n;
	return ssl_result(c, r);
}

ssize_t tls_write(struct tls_conn *c, const void *buf, size_t len)
{
	size_t n = 0;
	ERR_clear_error();
	errno = 0;
	int r = SSL_write_ex(c->ssl, buf, len, &n);
	if (r == 1)
		return (ssize_t)n;
	r = ssl_result(c, r);
	return r == 0 ? TLS_FAILED : r;
}

int tls_pending(struct tls_conn *c)
{
	return SSL_pending(c->ssl);
}

const char *tls_error(const struct tls_conn *c)
{
	return c->error[0] ? c->error : "unknown error";
}

void tls_describe(struct tls_conn *c, char *buf, size_t len)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
	int alg = 0;
	int bits = cipher ? SSL_CIPHER_get_bits(cipher, &alg) : 0;
	snprintf(buf, len, "%s with cipher %s (%d/%d bits)", SSL_get_version(c->ssl),
	         cipher ? SSL_CIPHER_get_name(cipher) : "none", bits, alg);
}
