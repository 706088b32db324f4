"""Real peers for the relay tests: a dnsmasq DNS server and SMTP peers.

Dns:      dnsmasq on 127.0.0.1 and a free port, authoritative for the test
          zones given as records (MX/A/AAAA, null MX, NXDOMAIN by absence
          under a local= domain, SERVFAIL by forwarding a domain to a dead
          server).  Started and ended by PID; its files live in a temp dir.
Peer:     an aiosmtpd SMTP server (Debian's, from /usr/lib/python3/
          dist-packages) on a loopback address and port, recording each
          connection, envelope (with ESMTP parameters) and message, with a
          script of replies per command.
Listener: the accept loop and close() the raw-socket peers share (here
          and in the test files' own peers).
Hostile:  a raw-socket server that answers with one scripted byte string
          (a 10,000-line reply, NUL bytes, bare LF, a 1 MB line, a reply
          that never ends).

Invariants: everything listens on loopback only; each object owns what it
started and ends it in close() (used as a context manager).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.append("/usr/lib/python3/dist-packages")

DNSMASQ = "/usr/sbin/dnsmasq"


def free_port(host="127.0.0.1", kind=socket.SOCK_STREAM):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, kind)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_port_on_all(hosts):
    """A TCP port free on every one of hosts (peers on .2 and .3 share it,
    since modules.smtp.port is one number)."""
    for _ in range(200):
        p = free_port(hosts[0])
        ok = True
        for h in hosts[1:]:
            fam = socket.AF_INET6 if ":" in h else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            try:
                s.bind((h, p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    raise RuntimeError("no port free on all of %s" % (hosts,))


class Dns:
    """dnsmasq serving only the given records.

    mx:        {domain: [(pref, host), ...]}  ((0, ".") is a null MX)
    a, aaaa:   {name: [addr, ...]}
    servfail:  domains whose queries get SERVFAIL (forwarded to a server
               that is not there, so dnsmasq answers SERVFAIL/REFUSED)
    Names under zone that have no record get NXDOMAIN."""

    def __init__(self, mx=None, a=None, aaaa=None, servfail=(), zone="test"):
        if not os.path.exists(DNSMASQ):
            raise RuntimeError("dnsmasq not installed")
        self.dir = tempfile.mkdtemp(prefix="petrel-dns-")
        # dnsmasq binds the port for UDP and TCP; a port free for UDP may be
        # taken for TCP by a parallel test: retry on another port.
        for attempt in range(10):
            try:
                self._start(mx, a, aaaa, servfail, zone)
                return
            except RuntimeError as e:
                if "in use" not in str(e) or attempt == 9:
                    shutil.rmtree(self.dir, ignore_errors=True)
                    raise

    def _start(self, mx, a, aaaa, servfail, zone):
        self.port = free_port("127.0.0.1", socket.SOCK_DGRAM)
        self.addr = "127.0.0.1:%d" % self.port
        lines = ["no-resolv", "no-hosts", "no-poll", "bind-interfaces",
                 "listen-address=127.0.0.1", "port=%d" % self.port,
                 "log-queries", "cache-size=0", "local=/%s/" % zone]
        for d, hosts in (mx or {}).items():
            for pref, h in hosts:
                if h == ".":
                    # dnsmasq cannot write an MX whose target is the root;
                    # the RFC 7505 null MX is an MX 0 with an empty name.
                    lines.append("dns-rr=%s,15,%s" % (d, "0000" + "00"))
                else:
                    lines.append("mx-host=%s,%s,%d" % (d, h, pref))
        for name, addrs in (a or {}).items():
            for x in addrs:
                lines.append("host-record=%s,%s" % (name, x))
        for name, addrs in (aaaa or {}).items():
            for x in addrs:
                lines.append("host-record=%s,%s" % (name, x))
        dead = free_port("127.0.0.1", socket.SOCK_DGRAM)
        for d in servfail:
            lines.append("server=/%s/127.0.0.1#%d" % (d, dead))
        self.conf = os.path.join(self.dir, "dnsmasq.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = os.path.join(self.dir, "dnsmasq.log")
        logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [DNSMASQ, "-k", "-C", self.conf, "--log-facility=-",
             "--pid-file=", "--user=%s" % _me()],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        logf.close()
        self._wait_up()

    def _wait_up(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dnsmasq exited: %s" % open(self.log).read())
            with open("/proc/net/udp") as f:
                if any(":%04X " % self.port in l and "0100007F" in l for l in f):
                    return
            time.sleep(0.05)
        raise RuntimeError("dnsmasq did not bind 127.0.0.1:%d" % self.port)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def _me():
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


class Peer:
    """An aiosmtpd server on host:port recording what it receives.

    script: {"RCPT": {"bad@x.test": "550 5.1.1 no"}, "DATA": [...]} —
            for "DATA" and "MAIL" a list of replies used in turn (None: the
            normal 250), for "RCPT" a dict by address.
    close_after_dot: drop the connection instead of answering the final dot
                     this many times.
    """

    def __init__(self, host="127.0.0.1", port=None, script=None,
                 close_after_dot=0, tls_context=None, dsn=True):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP
        self.host = host
        self.port = port or free_port(host)
        self.script = script or {}
        self.close_after_dot = close_after_dot
        self.messages = []        # (mail_from, rcpts, mail_options, rcpt_options, bytes)
        self.connections = 0
        self.transactions = 0
        self.lock = threading.Lock()
        self._data_replies = list(self.script.get("DATA", []))
        peer = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                r = peer.script.get("RCPT", {}).get(address)
                if r:
                    return r
                envelope.rcpt_tos.append(address)
                envelope.rcpt_options.extend(rcpt_options)
                return "250 2.1.5 OK"

            async def handle_DATA(self, server, session, envelope):
                with peer.lock:
                    peer.transactions += 1
                    r = peer._data_replies.pop(0) if peer._data_replies else None
                if peer.close_after_dot > 0:
                    peer.close_after_dot -= 1
                    server.transport.close()
                    return "250 2.0.0 never seen"
                if r:
                    return r
                with peer.lock:
                    peer.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                          list(envelope.mail_options),
                                          list(envelope.rcpt_options),
                                          envelope.original_content or envelope.content))
                return "250 2.0.0 Ok: queued"

        class CountingSMTP(SMTP):
            def connection_made(self, transport):
                with peer.lock:
                    peer.connections += 1
                super().connection_made(transport)

        class Ctl(Controller):
            def factory(self):
                return CountingSMTP(self.handler, enable_SMTPUTF8=True,
                                    decode_data=False,
                                    tls_context=tls_context,
                                    require_starttls=False)

        self.ctl = Ctl(Handler(), hostname=host, port=self.port)
        self.ctl.start()

    def wait_messages(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError("peer %s:%d got %d messages, wanted %d"
                             % (self.host, self.port, len(self.messages), n))

    def close(self):
        self.ctl.stop()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class Listener:
    """A TCP listener on loopback host:port (a free one when port is None)
    for the raw-socket peers: a daemon thread accepts, and each connection
    goes to self._accepted(conn), which the subclass writes.  With
    track_conns, accepted sockets are kept in self.conns and closed by
    close(); the listening socket always is.  A context manager."""

    track_conns = True

    def __init__(self, host="127.0.0.1", port=None, backlog=16, family=socket.AF_INET):
        self.host = host
        self.port = port or free_port(host)
        self.lock = threading.Lock()
        self.stopping = False
        self.conns = []
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, self.port))
        self.sock.listen(backlog)

    def start(self):
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.track_conns:
                with self.lock:
                    self.conns.append(c)
            self._accepted(c)

    def _accepted(self, conn):
        raise NotImplementedError

    def close(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class Hostile(Listener):
    """A raw-socket peer: accepts, sends `payload` (bytes, or a callable
    writing to the socket), and keeps the connection until closed."""

    def __init__(self, payload, host="127.0.0.1", port=None):
        super().__init__(host, port, backlog=64)
        self.payload = payload
        self.connections = 0
        self.start()

    def _accepted(self, c):
        self.connections += 1
        threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            if callable(self.payload):
                self.payload(c)
            else:
                c.sendall(self.payload)
            while not self.stopping and c.recv(65536):
                pass
        except OSError:
            pass


HOSTILE_PAYLOADS = {
    "10000_lines": b"220-x\r\n" * 10000 + b"220 x\r\n",
    "nul_bytes": b"220 hi\x00\x00there\r\n",
    "bare_lf": b"220-one\n220 two\n",
    "1mb_line": b"220 " + b"x" * (1 << 20) + b"\r\n",
    "never_ends": lambda c: [c.sendall(b"220-still going\r\n") or time.sleep(0.01)
                             for _ in range(1 << 30)],
}
