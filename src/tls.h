/*
 * tls.h - TLS for the SMTP server: the OpenSSL 3 glue, and nothing else
 * (no session logic; smtp_server.c drives it from the event loop).
 *
 * A tls_server is one SSL_CTX: a listener's certificate chain and key,
 * TLS 1.2 at least, no compression, no renegotiation.  It is made before
 * privileges are dropped, so key files readable by root only work.
 *
 * A tls_conn is one non-blocking connection over a socket the caller owns.
 * Every operation returns at once: TLS_WANT_READ / TLS_WANT_WRITE say
 * which readiness of the socket to wait for before calling it again (with
 * the same data, for tls_write).  Errors never abort: the text of the last
 * one is kept for the log line (tls_error).
 *
 * Ownership: tls_server_free / tls_conn_free take T ** and clear it; a
 * tls_conn must be freed before the tls_server it came from.
 */
#ifndef PETREL_TLS_H
#define PETREL_TLS_H

#include <stddef.h>
#include <sys/types.h>

struct tls_server;
struct tls_conn;

#define TLS_FAILED     (-1)
#define TLS_WANT_READ  (-2)
#define TLS_WANT_WRITE (-3)

/* Load cert (PEM chain) and key; 0, or -1 with the reason in err and
 * *bad_file set to the file it is about (cert_file or key_file). */
int tls_server_new(const char *cert_file, const char *key_file, struct tls_server **out,
                   const char **bad_file, char *err, size_t errlen)
	__attribute__((warn_unused_result));
void tls_server_free(struct tls_server **ts);

/* A server-side connection on fd; NULL when OpenSSL is out of memory. */
struct tls_conn *tls_conn_new(struct tls_server *ts, int fd);
/* Send close_notify if the handshake was done (once, without waiting),
 * then free. */
void tls_conn_free(struct tls_conn **c);

/* 1 when the handshake is complete, TLS_WANT_* or TLS_FAILED. */
int tls_handshake(struct tls_conn *c);
/* Bytes read (> 0), 0 when the peer closed, TLS_WANT_* or TLS_FAILED. */
ssize_t tls_read(struct tls_conn *c, void *buf, size_t len);
/* Bytes written (> 0, maybe fewer than len), TLS_WANT_* or TLS_FAILED. */
ssize_t tls_write(struct tls_conn *c, const void *buf, size_t len);
/* Decrypted bytes OpenSSL holds that tls_read would return at once. */
int tls_pending(struct tls_conn *c);

/* Why the last operation failed, for the log. */
const char *tls_error(const struct tls_conn *c);
/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" */
void tls_describe(struct tls_conn *c, char *buf, size_t len);

#endif
