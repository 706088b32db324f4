"""petrel.py - harness for petrel's black-box tests.

Every test file in this directory is an executable python3 script that
imports this module, defines functions named test_*, and ends with

    if __name__ == "__main__":
        petrel.main()

main() runs the test functions in the order they are defined and prints TAP:
"ok N - name" / "not ok N - name" (the traceback and the tail of the daemon
log as "# " lines), "ok N - name # SKIP reason" for skipped tests, then
"1..N".  Exit status: 0 whenever the script ran (the TAP driver counts the
failures), 99 on a harness error (petreld missing, no port, ...).

Security rule: every daemon started here listens on 127.0.0.1 only, and every
connection goes to 127.0.0.1.

Environment:
  PETRELD              the daemon binary (default <top>/_build/default/src/petreld)
  PETREL_MODULE_PATH   module path (default <top>/modules/{mta,maildir,router})
  PETREL_TIMEOUT_SCALE multiply every timeout (e.g. 3 under valgrind/ASan)
  PETREL_KEEP=1        keep every temp dir (else kept only on failure)
  ASAN_OPTIONS etc.    passed through to the daemon untouched
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HOST = "127.0.0.1"          # the only address anything here talks to
HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))

PETRELD = os.environ.get("PETRELD") or os.path.join(TOP, "_build", "default", "src", "petreld")
# modules are found beside the daemon's build: <builddir>/modules/<name>
BUILDDIR = os.path.dirname(os.path.dirname(os.path.abspath(PETRELD)))
MODULE_PATH = os.environ.get("PETREL_MODULE_PATH") or ":".join(
    [os.path.join(BUILDDIR, "modules", m)
     for m in ("mta", "msa", "maildir", "router", "regex", "ratelimit", "smtp", "lmtp")]
    + [os.path.join(BUILDDIR, "tests", "modules")])
SCALE = float(os.environ.get("PETREL_TIMEOUT_SCALE") or "1")
HOSTNAME = "mx.test"
DEFAULT_SIZE_LIMIT = 10240000

QID_RE = re.compile(rb"queued as ([0-9A-Za-z]+)")



def rss(pid):
    """Resident memory of process pid, in bytes (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")

def T(seconds):
    """A timeout, scaled for slow builds."""
    return seconds * SCALE


class HarnessError(Exception):
    """The harness itself cannot work: the script exits 99."""


class Skip(Exception):
    """Raised by a test to be reported as '# SKIP reason'."""


def skip(reason):
    raise Skip(reason)


# ---------------------------------------------------------------------------
# TAP runner

_diag_lines = []            # diagnostics of the running test
_daemons_in_test = []       # daemons started by the running test


def diag(msg):
    """A '# ' line printed after the running test's ok/not ok line."""
    for line in str(msg).splitlines() or [""]:
        _diag_lines.append(line)


class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout("test took longer than its time limit")


def main(tests=None, per_test_timeout=150):
    """Run the test_* functions of __main__ (or the given list)."""
    if tests is None:
        mod = sys.modules["__main__"]
        tests = [v for k, v in vars(mod).items()
                 if k.startswith("test_") and callable(v)]
        tests.sort(key=lambda f: f.__code__.co_firstlineno)
    wanted = sys.argv[1:]
    if wanted:
        tests = [t for t in tests
                 if any(w in t.__name__ for w in wanted)]
    if not (os.path.isfile(PETRELD) and os.access(PETRELD, os.X_OK)):
        print("Bail out! petreld not found or not executable: %s" % PETRELD)
        sys.stdout.flush()
        sys.exit(99)
    signal.signal(signal.SIGALRM, _alarm)
    n = 0
    for t in tests:
        n += 1
        name = t.__name__[5:] if t.__name__.startswith("test_") else t.__name__
        del _diag_lines[:]
        del _daemons_in_test[:]
        status, extra = "ok", ""
        tb = None
        signal.alarm(int(T(per_test_timeout)))
        try:
            t()
        except Skip as e:
            extra = " # SKIP %s" % e
        except HarnessError as e:
            signal.alarm(0)
            _cleanup_daemons()
            print("Bail out! harness error in %s: %s" % (name, e))
            sys.stdout.flush()
            sys.exit(99)
        except BaseException as e:  # noqa: B902 - report everything
            if isinstance(e, KeyboardInterrupt):
                raise
            status = "not ok"
            tb = traceback.format_exc()
        finally:
            signal.alarm(0)
        leftovers = _cleanup_daemons()
        if leftovers and status == "ok" and not extra:
            status = "not ok"
            tb = "\n".join(leftovers)
        print("%s %d - %s%s" % (status, n, name, extra))
        if tb:
            for line in tb.rstrip().splitlines():
                print("# " + line)
            for d in list(_daemons_seen_in_failed()):
                print("# --- daemon dir %s, last log lines:" % d.dir)
                for line in d.log_tail(25):
                    print("#   " + line)
        for line in _diag_lines:
            print("# " + line)
        sys.stdout.flush()
    print("1..%d" % n)
    sys.stdout.flush()
    sys.exit(0)


def _daemons_seen_in_failed():
    for d in _daemons_in_test:
        d.keep = True
        yield d


def _cleanup_daemons():
    """Stop daemons a test left running; return complaints."""
    complaints = []
    for d in _daemons_in_test:
        if d.proc is not None and d.proc.poll() is None:
            try:
                d._terminate_quietly()
            except Exception as e:  # pragma: no cover
                complaints.append("cleanup of %s: %s" % (d.dir, e))
    return complaints


# ---------------------------------------------------------------------------
# libconfig writer

def cfg_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) + ("L" if abs(v) > 2**31 - 1 else "")
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(cfg_value(x) for x in v) + " ]"
    if isinstance(v, dict):
        return "{ " + " ".join("%s = %s;" % (k, cfg_value(x))
                               for k, x in v.items()) + " }"
    raise TypeError("no libconfig form for %r" % (v,))


def _free_port():
    return _free_ports(1)[0]


def _free_ports(n):
    """n different free loopback ports: each socket stays bound until all
    are picked, so the kernel cannot hand out one port twice."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    except OSError as e:
        raise HarnessError("cannot find a free loopback port: %s" % e)
    finally:
        for s in socks:
            s.close()


def _listen_addrs(port):
    """Local addresses (hex, as in /proc/net/tcp*) LISTENing on port."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    addr, _, p = fields[1].rpartition(":")
                    if int(p, 16) == port and fields[3] == "0A":
                        out.append(addr)
        except OSError:
            if name.endswith("tcp"):
                raise
    return out


LOOPBACK_HEX = ("0100007F", "00000000000000000000000001000000")


def _listening(port):
    """True when some socket LISTENs on 127.0.0.1:port.

    A listener on any other address (0.0.0.0, ::, ...) breaks the rule that
    the tests listen on loopback only: that is an error."""
    try:
        addrs = _listen_addrs(port)
        bad = [a for a in addrs if a not in LOOPBACK_HEX]
        if bad:
            raise DaemonError("petreld listens on a non-loopback address "
                              "(hex %s) for port %d" % (bad, port))
        return "0100007F" in addrs
    except OSError:
        # no /proc: fall back on a connect (the daemon sees a short session)
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return True
        except OSError:
            return False


def _pdeathsig():
    # let the kernel kill petreld if this test script dies
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass


_known_settings = {}


def _knows_setting(name):
    """True when this petreld has the setting (petreld -h lists them):
    lets the harness run an older build too, to show a test fails there."""
    if name not in _known_settings:
        try:
            out = subprocess.run([PETRELD, "-h"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = b""
        _known_settings[name] = re.search(rb"\b" + name.encode() + rb"\b", out) is not None
    return _known_settings[name]


class DaemonError(AssertionError):
    pass


class Daemon:
    """One petreld in its own temp dir, on its own loopback port.

    settings:      top-level settings overriding the defaults (None removes one)
    router:        dict for modules.router (mailboxes, aliases)
    extra:         raw libconfig text appended at top level
    modules_extra: raw libconfig text put inside modules = { ... }
    listener:      more settings of the (first) listener, e.g. {"tls": "starttls"}
    more_listeners: further listeners (dicts of settings), each on its own
                   port: self.ports[1], self.ports[2], ...
    """

    def __init__(self, settings=None, router=None, extra="", modules_extra="",
                 start=True, listener=None, more_listeners=(), preexec=None):
        self.dir = tempfile.mkdtemp(prefix="petrel-bb-")
        self.ports = _free_ports(1 + len(more_listeners))
        self.port = self.ports[0]
        self.conf = os.path.join(self.dir, "petrel.conf")
        self.spool = os.path.join(self.dir, "spool")
        self.mail = os.path.join(self.dir, "mail")
        self.logfile = os.path.join(self.dir, "petreld.log")
        os.makedirs(self.spool)
        os.makedirs(self.mail)
        self.proc = None
        self.preexec = preexec       # run in the child before exec (e.g. setrlimit)
        self.keep = bool(os.environ.get("PETREL_KEEP"))
        self.starts = 0
        s = {
            "hostname": HOSTNAME,
            "spool": self.spool,
            "domains": ["localhost", "example.test"],
            "relay_networks": [],
            "message_size_limit": DEFAULT_SIZE_LIMIT,
            "recipient_limit": 1000,
            "smtp_timeout": 300,
            "data_timeout": 600,
        }
        if _knows_setting("greet_pause"):
            s["greet_pause"] = 0     # tests are greeted at once unless they say
        for k, v in (settings or {}).items():
            if v is None:
                s.pop(k, None)
            else:
                s[k] = v
        lines = ["# written by tests/blackbox/petrel.py"]
        for k, v in s.items():
            lines.append("%s = %s;" % (k, cfg_value(v)))
        groups = []
        for port, more in zip(self.ports, [listener or {}] + list(more_listeners)):
            g = {"listen": "%s:%d" % (HOST, port), "stage": "mta"}
            g.update(more)
            groups.append(cfg_value(g))
        lines.append("listeners = ( %s );" % ", ".join(groups))
        lines.append("modules = {")
        lines.append("  maildir = { root = %s; };"
                     % cfg_value(os.path.join(self.mail, "%d", "%u")))
        lines.append("  router = %s;" % cfg_value(router or {}))
        if modules_extra:
            lines.append(modules_extra)
        lines.append("};")
        if extra:
            lines.append(extra)
        self.config_text = "\n".join(lines) + "\n"
        with open(self.conf, "w") as f:
            f.write(self.config_text)
        _daemons_in_test.append(self)
        if start:
            self.start()

    # -- lifecycle ---------------------------------------------------------

    def env(self):
        e = dict(os.environ)
        e["PETREL_MODULE_PATH"] = MODULE_PATH
        return e

    def start(self, timeout=15):
        if not os.path.exists(PETRELD):
            raise HarnessError("petreld not found: %s" % PETRELD)
        if self.proc is not None and self.proc.poll() is None:
            raise DaemonError("start: already running")
        self.starts += 1
        log = open(self.logfile, "ab")
        log.write(b"=== petreld start #%d\n" % self.starts)
        log.flush()
        self.proc = subprocess.Popen(
            [PETRELD, "-f", "-c", self.conf], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, env=self.env(),
            cwd=self.dir, start_new_session=True, preexec_fn=self._preexec)
        log.close()
        deadline = time.monotonic() + T(timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError("petreld exited with code %s during start-up"
                                  % self.proc.returncode)
            if all(_listening(p) for p in self.ports):
                self._wait_started(deadline)
                return self
            time.sleep(0.02)
        raise DaemonError("petreld did not listen on %s:%d within %ss"
                          % (HOST, self.port, T(timeout)))

    def _wait_started(self, deadline):
        """The TCP listeners are bound first; the spool's recovery, the
        control and pickup sockets and the descriptor budget come after,
        and "petreld V started" is logged when they are done.  Wait for
        this start's line, so that a test does not act (prlimit, a
        sendmail, a petrelctl) in between.  A daemon that exits meanwhile
        is an error; one that never logs the line (a test's own logging)
        is taken as started at the deadline, as before."""
        while time.monotonic() < deadline:
            if len(re.findall(r"petreld \S+ started", self.log_text())) >= self.starts:
                return
            if self.proc.poll() is not None:
                raise DaemonError("petreld exited with code %s during start-up"
                                  % self.proc.returncode)
            time.sleep(0.02)

    def _preexec(self):
        _pdeathsig()
        if self.preexec:
            self.preexec()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM, wait, assert exit code 0."""
        if not self.running():
            raise DaemonError("stop: petreld is not running (exit code %s)"
                              % (self.proc.returncode if self.proc else None))
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(T(timeout))
        except subprocess.TimeoutExpired:
            self._killpg()
            raise DaemonError("petreld did not exit within %ss of SIGTERM"
                              % T(timeout))
        self._killpg()       # leftovers of its process group, if any
        if rc != 0:
            raise DaemonError("petreld exited with code %s after SIGTERM" % rc)
        return rc

    def kill9(self):
        """SIGKILL the daemon (and anything in its process group)."""
        if not self.running():
            raise DaemonError("kill9: petreld is not running")
        self._killpg()
        self.proc.wait(T(10))

    def restart(self, timeout=15):
        if self.running():
            self.stop()
        return self.start(timeout)

    def _killpg(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _terminate_quietly(self):
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(T(10))
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            self._killpg()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            if self.proc is not None and not self.running() \
                    and self.proc.returncode not in (0, -signal.SIGKILL):
                self.keep = True
                raise DaemonError("petreld died by itself with code %s"
                                  % self.proc.returncode)
            if self.running():
                try:
                    self.stop()
                except Exception:
                    self.keep = True
                    raise
            self.assert_no_sanitizer_report()
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self.keep = True
            self._terminate_quietly()
        return False

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:", "WARNING: ThreadSanitizer")

    def assert_no_sanitizer_report(self):
        """In a sanitizer build, any report in the daemon's log fails the
        test (the exit code already catches most; this catches the rest)."""
        text = self.log_text()
        for mark in self.SANITIZER_MARKS:
            if mark in text:
                self.keep = True
                raise AssertionError("sanitizer report in petreld log (%s): %s"
                                     % (mark, self.logfile))

    # -- observation -------------------------------------------------------

    def log_text(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=25):
        return self.log_text().splitlines()[-n:]

    def wait_log(self, pattern, timeout=10):
        """Wait until the log matches the regex; return the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + T(timeout)
        while True:
            m = rx.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("log never matched %r" % pattern)
            time.sleep(0.05)

    def maildir(self, user, domain="localhost"):
        return os.path.join(self.mail, domain, user)

    def delivered_files(self, user, domain="localhost"):
        d = os.path.join(self.maildir(user, domain), "new")
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            return []
        return [os.path.join(d, n) for n in names
                if os.path.isfile(os.path.join(d, n))]

    def delivered(self, user, domain="localhost"):
        out = []
        for p in self.delivered_files(user, domain):
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def all_delivered_files(self):
        """Every file in any mail/<domain>/<user>/new."""
        out = []
        for dom in sorted(os.listdir(self.mail)):
            dpath = os.path.join(self.mail, dom)
            if not os.path.isdir(dpath):
                continue
            for user in sorted(os.listdir(dpath)):
                out.extend(self.delivered_files(user, dom))
        return out

    def all_delivered(self):
        out = []
        for p in self.all_delivered_files():
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def wait_delivered(self, user, n, timeout=10, domain="localhost"):
        """Wait until user's new/ holds at least n files; return contents."""
        deadline = time.monotonic() + T(timeout)
        while True:
            got = self.delivered(user, domain)
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    "%s@%s: %d message(s) delivered, expected %d within %ss"
                    % (user, domain, len(got), n, T(timeout)))
            time.sleep(0.05)

    def wait_all_delivered(self, n, timeout=10):
        deadline = time.monotonic() + T(timeout)
        while True:
            got = self.all_delivered_files()
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise AssertionError("%d message(s) delivered in all, expected"
                                     " %d within %ss" % (len(got), n, T(timeout)))
            time.sleep(0.05)

    def assert_nothing_more(self, n_expected, grace=1.0):
        """After the expected deliveries, nothing else appears for grace s."""
        deadline = time.monotonic() + grace
        while True:
            got = self.all_delivered_files()
            if len(got) > n_expected:
                raise AssertionError("%d message(s) delivered, expected %d: %s"
                                     % (len(got), n_expected, got))
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def spool_files(self):
        """Regular files under the spool (not the control socket)."""
        out = []
        for root, dirs, files in os.walk(self.spool):
            for f in files:
                p = os.path.join(root, f)
                if os.path.isfile(p):
                    out.append(p)
        return sorted(out)

    def queued(self):
        """Queue ids of the sealed messages in queue/ (slot files that are
        free or being written hold no mail), sorted."""
        out = []
        qdir = os.path.join(self.spool, "queue")
        for name in os.listdir(qdir) if os.path.isdir(qdir) else []:
            try:
                with open(os.path.join(qdir, name), "rb") as f:
                    head = f.read(4096)
            except OSError:
                continue
            if not (head.startswith(b"PETREL-QUEUE 2 Q ")
                    or head.startswith(b"PETREL-QUEUE 3 Q ")):
                continue
            line = head[64:].split(b"\n", 1)[0]
            if line.startswith(b"Q "):
                out.append(line[2:].decode())
        return sorted(out)

    def client(self, port=None, **kw):
        return Client(port or self.port, **kw)


# ---------------------------------------------------------------------------
# raw-socket SMTP client

class Closed(AssertionError):
    pass


class Reply:
    def __init__(self, code, lines, raw):
        self.code = code
        self.lines = lines      # texts after "NNN-"/"NNN ", str
        self.raw = raw          # bytes as received

    @property
    def text(self):
        return self.lines[-1] if self.lines else ""

    @property
    def enh(self):
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", self.text)
        return m.group(1) if m else None

    @property
    def qid(self):
        m = QID_RE.search(self.raw)
        return m.group(1).decode() if m else None

    def __repr__(self):
        return "Reply(%r)" % self.raw

    def __str__(self):
        return self.raw.decode("utf-8", "replace").rstrip()


class Client:
    """A line-exact SMTP client over a raw socket to 127.0.0.1."""

    def __init__(self, port, timeout=10, greet=True, tls=False, rcvbuf=None):
        """tls=True: implicit TLS (port 465 style), the handshake first.
        rcvbuf: a small SO_RCVBUF makes the server wait to write."""
        self.timeout = T(timeout)
        if rcvbuf:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(self.timeout)
            self.sock.connect((HOST, port))
        else:
            self.sock = socket.create_connection((HOST, port), timeout=self.timeout)
        self.buf = b""
        self.eof = False
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        self.greeting = self.reply() if greet else None

    def starttls(self):
        """STARTTLS, 220, then the handshake; asserts nothing else came
        before it (no reply the server should not have sent)."""
        self.cmd("STARTTLS", 220, "2.0.0")
        if self.buf:
            raise AssertionError("bytes after the 220 to STARTTLS: %r" % self.buf)
        self.sock = tls_context().wrap_socket(self.sock)
        return self.sock

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False

    # -- bytes -------------------------------------------------------------

    def send(self, data):
        """Send bytes exactly as given, in one sendall."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk
        return chunk

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            if self.eof:
                raise Closed("connection closed by the server; pending %r"
                             % self.buf)
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete reply line within %ss; got %r"
                                     % (timeout, self.buf))
            try:
                self._fill(left)
            except socket.timeout:
                raise socket.timeout("no complete reply line within %ss; got %r"
                                     % (timeout, self.buf))
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self, timeout=None):
        """Read one complete (possibly multi-line) reply."""
        timeout = self.timeout if timeout is None else T(timeout)
        lines, raw, code = [], b"", None
        while True:
            line = self._line(timeout)
            raw += line + b"\r\n"
            m = re.match(rb"^(\d{3})([ -])(.*)$", line, re.S)
            if not m and re.match(rb"^\d{3}$", line):
                m = re.match(rb"^(\d{3})()()$", line)
            if not m:
                raise AssertionError("malformed reply line %r" % line)
            c = int(m.group(1))
            if code is not None and c != code:
                raise AssertionError("reply code changed inside a multi-line "
                                     "reply: %r" % raw)
            code = c
            lines.append(m.group(3).decode("utf-8", "surrogateescape"))
            if m.group(2) != b"-":
                return Reply(code, lines, raw)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def expect(self, code, enh=None, timeout=None, what=""):
        r = self.reply(timeout)
        check(r, code, enh, what)
        return r

    def cmd(self, line, code=None, enh=None, timeout=None):
        """Send one command (CRLF added) and read its reply."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        r = self.reply(timeout)
        if code is not None:
            check(r, code, enh, line.decode("utf-8", "replace")[:60])
        return r

    def ehlo(self, name="client.test"):
        r = self.cmd("EHLO " + name, 250)
        return r

    def expect_closed(self, timeout=5):
        """Assert the server closes the connection, with no more bytes."""
        deadline = time.monotonic() + T(timeout)
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("server did not close the connection "
                                     "within %ss" % T(timeout))
            try:
                self._fill(left)
            except socket.timeout:
                continue
            except OSError:
                self.eof = True
        if self.buf:
            raise AssertionError("unexpected bytes before close: %r" % self.buf)

    def expect_silence(self, seconds=0.3):
        """Assert nothing arrives for the given time (e.g. no extra replies)."""
        if self.buf:
            raise AssertionError("unexpected pending bytes: %r" % self.buf)
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                chunk = self._fill(left)
            except socket.timeout:
                return
            if chunk:
                raise AssertionError("unexpected bytes: %r" % self.buf)
            if self.eof:
                raise AssertionError("connection closed unexpectedly")

    # -- transactions ------------------------------------------------------

    def mail_rcpt(self, sender, rcpts, params=""):
        self.cmd("MAIL FROM:<%s>%s" % (sender, (" " + params) if params else ""),
                 250)
        for r in rcpts:
            self.cmd("RCPT TO:<%s>" % r, 250)

    def data(self, message):
        """DATA, the message (CRLF, dot-stuffed here), final dot; return QID."""
        self.cmd("DATA", 354)
        self.send(dot_stuff(message) + b".\r\n")
        r = self.expect(250, "2.0.0", what="end of DATA")
        if r.qid is None:
            raise AssertionError("no 'queued as <QID>' in %r" % r.raw)
        return r.qid

    def send_mail(self, sender, rcpts, message, params=""):
        self.mail_rcpt(sender, rcpts, params)
        return self.data(message)


def check(r, code, enh=None, what=""):
    if r.code != code or (enh is not None and r.enh != enh):
        raise AssertionError("%sexpected %s%s, got %r"
                             % ((what + ": ") if what else "", code,
                                (" " + enh) if enh else "", r.raw))


def send_one(port, sender, rcpts, message, ehlo="client.test", params=""):
    """A whole session: greeting, EHLO, one message, QUIT; returns QID."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    with Client(port) as c:
        check(c.greeting, 220)
        c.ehlo(ehlo)
        qid = c.send_mail(sender, rcpts, message, params)
        c.cmd("QUIT", 221)
    return qid


# ---------------------------------------------------------------------------
# TLS

def tls_context():
    """A client context that accepts the tests' self-signed certificates."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def run_as(d, user):
    """Prepare Daemon d (not started) to run as user: its settings name
    the user, and the user can reach the spool and write the maildirs.
    Returns the pwd entry.  Skips the test when not root."""
    import pwd
    if os.geteuid() != 0:
        skip("needs root (petreld dropping to %s)" % user)
    pw = pwd.getpwnam(user)
    os.chmod(d.dir, 0o755)
    os.chown(d.mail, pw.pw_uid, pw.pw_gid)
    return pw


def make_cert(directory, name="mx.test"):
    """A self-signed certificate and its key (PEM) in directory; returns
    (cert_path, key_path).  Skips the test when the openssl CLI is missing."""
    openssl = shutil.which("openssl")
    if not openssl:
        skip("openssl command not installed")
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    p = run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name])
    if p.returncode != 0:
        raise HarnessError("openssl req failed: %s" % p.stderr.decode())
    return cert, key


def _libcrypt():
    import ctypes
    import ctypes.util
    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p,
                                  ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return lib


def crypt_hash_setting(password, setting):
    """crypt(3) of password with a full setting ("$6$rounds=N$salt")."""
    out = _libcrypt().crypt(password.encode(), setting)
    if not out or out.startswith(b"*"):
        raise HarnessError("crypt() failed for %r" % setting)
    return out.decode()


def crypt_hash(password, prefix=b"$y$"):
    """A crypt(3) hash made by libcrypt itself (Python's crypt module is
    going away): prefix b"$y$" yescrypt, b"$6$" SHA-512."""
    setting = _libcrypt().crypt_gensalt(prefix, 0, None, 0)
    if not setting:
        skip("libcrypt cannot make %s hashes" % prefix.decode())
    return crypt_hash_setting(password, setting)


def write_passwd(directory, users, name="passwd"):
    """An auth_passwords file: users is a list of lines ("user:HASH", ...)."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write("\n".join(users) + "\n")
    return path


def auth_plain(user, password, authzid=""):
    """The base64 SASL PLAIN response."""
    import base64
    return base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()


# ---------------------------------------------------------------------------
# messages

def crlf(text):
    """Text or bytes with any line ending -> bytes with CRLF line endings."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    text = text.replace(b"\r\n", b"\n")
    return text.replace(b"\n", b"\r\n")


def make_message(subject="test", body="hello\n", headers=()):
    """A small RFC 5322 message, CRLF line endings, ending in CRLF."""
    h = ["From: <sender@localhost>", "To: <user@localhost>",
         "Subject: " + subject]
    h.extend(headers)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not body.endswith(b"\n"):
        body += b"\n"
    return crlf("\n".join(h).encode("utf-8") + b"\n\n" + body)


def dot_stuff(message):
    """Dot-stuff a CRLF message for DATA (the terminator is not added)."""
    out = []
    for line in message.split(b"\r\n"):
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out)


def to_lf(data):
    return data.replace(b"\r\n", b"\n")


def expected_return_path(sender):
    return b"Return-Path: <" + sender.encode("utf-8") + b">\n"


def expected_delivered_to(rcpt):
    # Delivered-To carries the bare address, as Postfix and qmail write it.
    return b"Delivered-To: " + rcpt.encode("utf-8") + b"\n"


class Delivered:
    """A delivered maildir file split into its parts."""

    def __init__(self, content):
        self.content = content
        lines = content.split(b"\n")
        if len(lines) < 4:
            raise AssertionError("delivered file too short: %r" % content[:300])
        self.return_path = lines[0] + b"\n"
        self.delivered_to = lines[1] + b"\n"
        if not lines[2].startswith(b"Received: from "):
            raise AssertionError("third line is not 'Received: from ': %r"
                                 % content[:400])
        i = 3
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
        self.received_raw = b"\n".join(lines[2:i]) + b"\n"
        self.received = re.sub(rb"\n[ \t]+", b" ", self.received_raw.strip())
        self.body = b"\n".join(lines[i:])
        m = re.search(rb"\bid ([0-9A-Za-z]+)", self.received)
        self.qid = m.group(1).decode() if m else None


def qid_of_file(content):
    """QID from the first Received header of a delivered file, or None."""
    head = content.split(b"\n\n", 1)[0]
    m = re.search(rb"\nReceived: from [^\n]*(?:\n[ \t][^\n]*)*", b"\n" + head)
    if not m:
        return None
    m2 = re.search(rb"\bid ([0-9A-Za-z]+)", m.group(0))
    return m2.group(1).decode() if m2 else None


def assert_delivery(content, sender, rcpt, message, qid=None):
    """Check a delivered file against the sent (CRLF) message."""
    d = Delivered(content)
    if d.return_path != expected_return_path(sender):
        raise AssertionError("Return-Path: got %r, want %r"
                             % (d.return_path, expected_return_path(sender)))
    if d.delivered_to != expected_delivered_to(rcpt):
        raise AssertionError("Delivered-To: got %r, want %r"
                             % (d.delivered_to, expected_delivered_to(rcpt)))
    if qid is not None and d.qid != qid:
        raise AssertionError("Received: id %r, want %r in %r"
                             % (d.qid, qid, d.received_raw))
    want = to_lf(message)
    if d.body != want:
        raise AssertionError("body differs:\n got %r\nwant %r"
                             % (d.body[:500], want[:500]))
    return d


def block_mailbox(d, user):
    """Put a file where user@localhost's maildir would be in daemon d's
    mail store, so that local deliveries to that user defer; returns its
    path (remove it to let them through)."""
    os.makedirs(os.path.join(d.mail, "localhost"), exist_ok=True)
    path = os.path.join(d.mail, "localhost", user)
    with open(path, "w") as f:
        f.write("not a directory\n")
    return path


def run(argv, timeout=30, **kw):
    """Run a command; return CompletedProcess with bytes output."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=T(timeout), **kw)


def need_tool(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        skip("%s not installed" % path)


def start_thread(fn, *a, **kw):
    t = threading.Thread(target=fn, args=a, kwargs=kw, daemon=True)
    t.start()
    return t


DOVECOT = "/usr/sbin/dovecot"


class PrivateDovecot:
    """A Dovecot master of a test's own: conf and log are its files (the
    subclass writes conf), dir holds start.out.  start() waits until
    ready() returns true (OSError counts as not yet); stop() ends it.
    Used by test_dovecot (IMAP, POP3) and test_lmtp (LMTP)."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.log = os.path.join(self.dir, "dovecot.log")

    def ready(self):
        raise NotImplementedError

    def start(self):
        # the master goes to the background: no pipes it could keep open
        with open(os.path.join(self.dir, "start.out"), "a") as out:
            p = subprocess.run([DOVECOT, "-c", self.conf], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=subprocess.STDOUT, timeout=30)
        assert p.returncode == 0, "dovecot: %s" % self.log_text()
        deadline = time.monotonic() + T(10)
        while True:
            try:
                if self.ready():
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, "dovecot never listened: %s" % self.log_text()
            time.sleep(0.1)

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        subprocess.run([DOVECOT, "-c", self.conf, "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
