/*
 * session.h - one SMTP connection and its transaction (core-only layout of
 * the opaque petrel_session / petrel_txn / petrel_addr of the module API).
 */
#ifndef PETREL_SESSION_H
#define PETREL_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <petrel/petrel.h>
#include "event.h"
#include "mem.h"
#include "queue.h"
#include "smtp_parse.h"

struct petrel_addr {
	char *str;           /* local@domain as given, "" for <> */
	char *local;         /* unquoted local part */
	char *domain;        /* lower-case, "" if none */
	unsigned notify;     /* RCPT NOTIFY= (DSN), 0: not given */
	char *orcpt;         /* RCPT ORCPT= as given (xtext), NULL */
};

struct petrel_route {
	struct qmsg *qm;           /* the envelope that receives destinations */
	struct petrel_addr *rcpt;
	struct server *srv;
	int added;
};

enum data_state {
	D_LINE_START,        /* at the start of a line */
	D_DOT,               /* line started with '.' */
	D_DOT_CR,            /* ".\r" at line start */
	D_MID,               /* inside a line */
	D_CR,                /* saw '\r' inside a line */
};

struct msg_view;

/* Where a session is in its hook chain (filter_chain.c). */
struct chain_run {
	int step;                /* enum chain_step */
	int mod;                 /* chain position being run */
	int phase;               /* message step: 0 headers, 1..n parts, n+1 eom */
	unsigned long long pending_id;
	struct ev_timer timer;   /* pending_timeout */
};

struct petrel_txn {
	struct petrel_session *s;
	char qid[QID_MAX];
	struct petrel_addr sender;
	struct petrel_addr *rcpts;
	int nrcpt;
	int nrefused;            /* RCPTs refused (for "no valid recipients") */
	struct qmsg *qm;         /* the envelope being built: dests from routing */
	bool smtputf8;
	char reply[512];         /* set by a module for REJECT/TEMPFAIL */
	char check_reply[512];   /* a transport's check() refusal of the RCPT being routed */
	struct petrel_addr cur_rcpt;   /* the RCPT being judged by the chain */
	bool discard;            /* a module said DISCARD */
	bool hold;               /* a module said HOLD */
	bool env_dirty;          /* recipients changed after the envelope was written */
	struct msg_view *msg;    /* the message as filters see it (msg_edit.c) */
	void **slots;            /* per-module transaction state */
	/* message transfer */
	bool in_bdat;            /* BDAT used: DATA refused */
	int fd;                  /* the queue slot being written, -1 when none */
	struct buf wbuf;         /* bytes waiting to be written to fd */
	uint64_t size;           /* message bytes received */
	enum data_state dstate;
	bool in_headers;
	char hdr_start[10];      /* first bytes of the current header line */
	int hdr_len;
	uint64_t hdr_line;       /* content octets of the current header line */
	bool hdr_cont;           /* it began with SP or HT (a continuation line) */
	bool hdr_colon;          /* it holds a ':' */
	int hdr_fields;          /* header fields so far */
	uint64_t hdr_field_len;  /* octets of the current field, line ends included */
	const char *hdr_refuse;  /* the reply when the header section broke a limit */
	int received;            /* Received: headers seen */
	bool bare;               /* a bare CR or LF was seen */
	bool too_big;
	bool io_error;
	int io_errno;            /* errno of the write that failed */
};

enum session_state {
	S_CMD,                   /* reading commands */
	S_DATA,                  /* reading DATA content */
	S_BDAT,                  /* reading a BDAT chunk */
	S_COMMIT,                /* waiting for the spool to commit */
	S_CLOSING,               /* flushing the last reply, then close */
};

struct petrel_session {
	struct server *srv;
	struct listener *l;      /* a view of l->gen: stage, chain, TLS */
	struct generation *gen;  /* the generation it was accepted under (a reference) */
	int fd;
	struct sockaddr_storage peer;
	char peer_addr[64];      /* "127.0.0.1" */
	char peer_name[96];      /* "[127.0.0.1]:port" for logs */
	bool local;              /* came through pickup_socket: a local user (petrel-sendmail) */
	unsigned local_uid;      /* ... whose uid the kernel gave (SO_PEERCRED) */
	char *helo;
	bool esmtp;
	bool may_relay;
	enum session_state state;
	bool skipping;           /* discarding an over-long line */
	uint64_t bdat_left;
	uint64_t bdat_size;
	bool bdat_last;
	bool bdat_discard;       /* reading a refused chunk to throw it away */
	const char *bdat_fail;   /* its reply, sent when the chunk is read */
	struct buf in, out;
	struct ev_timer timer;
	uint64_t data_deadline;
	uint64_t cmd_deadline;   /* the command line being read is due (smtp_timeout from our reply) */
	bool turn_ours;          /* the timer was last set on our turn: the deadline restarts */
	uint64_t rate_start;     /* min_data_rate: this DATA / BDAT chunk began (ms) */
	uint64_t rate_bytes;     /* ... and has brought this many bytes */
	bool greet_wait;         /* greet_pause runs: the 220 is not sent yet */
	uint64_t greet_from;     /* when the pause began (ms), for the log */
	struct ev_timer greet_timer;
	bool counted;            /* in srv->clients (client_connection_limit) */
	struct petrel_txn *txn;
	char reply[512];         /* session-level reply from a module */
	int errors;              /* 4xx/5xx replies since the last message (error limits) */
	int junk;                /* NOOP, RSET, VRFY, HELP, HELO, EHLO since the last message */
	bool out_paused;         /* input waits: the client is not reading its replies */
	bool tarpit;             /* over soft_error_limit: the next reply waits for tarpit_timer */
	struct ev_timer tarpit_timer;
	bool tls_restart;        /* the chain's connect step after STARTTLS: no greeting */
	int ncmds[SMTP_AUTH + 1];
	struct petrel_session *prev, *next;
	struct chain_run run;
	bool pending;            /* a hook is suspended: input waits */
	bool discard_all;        /* DISCARD at connect/HELO: every message */
	bool hold_all;           /* HOLD at connect/HELO: every message */
	bool in_process;         /* inside session_process() */
	void **slots;            /* per-module session state */
	char *auth_user;         /* after AUTH (submission) */
	bool read_paused;
	bool peer_eof;           /* the client closed its side: answer what came, then close */
	bool closing_after_commit;
	/* TLS (smtp_server.c) */
	struct tls_conn *tls;    /* NULL: clear text */
	bool tls_handshaking;
	bool tls_start_after_flush;  /* STARTTLS answered: handshake once the 220 is out */
	int tls_hs_wants;        /* EV_READ or EV_WRITE: what the handshake waits for */
	int tls_read_wants;      /* EV_WRITE when a TLS read must write first, else 0 */
	int tls_write_wants;     /* EV_READ when a TLS write must read first, else 0 */
	char tls_info[128];      /* "TLSv1.3 with cipher ... (256/256 bits)" */
	/* AUTH (smtp_auth.c) */
	struct sasl *sasl;       /* an AUTH dialog waiting for a 334 response */
	struct auth_job *auth_job;   /* a password being checked on a worker */
	char *auth_try_user;     /* the login the auth hooks are judging */
	const char *auth_try_mech;
	bool auth_try_ok;        /* the password was right */
	int auth_failures;
};

#endif
