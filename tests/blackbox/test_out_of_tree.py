#!/usr/bin/env python3
"""A third party builds a module against the INSTALLED petrel.

petrel is installed from the build directory (the one PETRELD lives in)
into a staging directory with 'make install DESTDIR=...'.  Then, in an
empty directory, api/examples/noexe.c (and tests/modules/hooks.c) are
built with one cc line each, using only what pkg-config says about the
installed petrel.pc, and the installed petreld loads them:

    cc -shared -fPIC $(pkg-config --cflags petrel) -o noexe.so noexe.c

Messages are sent with smtplib.

pkg-config runs with --define-prefix: a staged install keeps the
configured prefix in petrel.pc, and --define-prefix derives the prefix
from where the .pc file actually is (<prefix>/lib/pkgconfig)."""

import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, T  # noqa: E402

SRCDIR = os.environ.get("PETREL_SRCDIR") or petrel.TOP
BUILDDIR = os.path.dirname(os.path.dirname(os.path.abspath(petrel.PETRELD)))

_install = {}     # the staged install, made once for the whole script


def clean_env():
    """The environment without the build's hints: no PETREL_MODULE_PATH
    (the daemon would search it first), no make jobserver, no CPATH."""
    env = dict(os.environ)
    for k in ("PETREL_MODULE_PATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
              "CPATH", "C_INCLUDE_PATH", "PKG_CONFIG_PATH",
              "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR"):
        env.pop(k, None)
    return env


def sh(cmd, env=None, cwd=None, timeout=300):
    p = subprocess.run(cmd, shell=True, env=env or clean_env(), cwd=cwd,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=T(timeout))
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s" % (cmd, p.returncode, out[-3000:]))
    return out


def installed():
    """Install once; return dict(prefix, pc, petreld, moduledir, cflags)."""
    if _install:
        return _install
    if not os.path.isfile(os.path.join(BUILDDIR, "Makefile")):
        petrel.skip("no Makefile in %s (PETRELD is not in a build tree)" % BUILDDIR)
    for tool in ("make", "cc", "pkg-config"):
        if not shutil.which(tool):
            petrel.skip("%s not installed" % tool)
    top = tempfile.mkdtemp(prefix="petrel-oot-")
    dest = os.path.join(top, "stage")
    sh("make -s install DESTDIR='%s'" % dest, cwd=BUILDDIR)
    pcs = []
    for root, dirs, files in os.walk(dest):
        if "petrel.pc" in files and root.endswith(os.path.join("lib", "pkgconfig")):
            pcs.append(root)
    assert len(pcs) == 1, "petrel.pc installed in %r" % pcs
    pcdir = pcs[0]
    prefix = os.path.dirname(os.path.dirname(pcdir))
    env = clean_env()
    env["PKG_CONFIG_PATH"] = pcdir
    pc = "PKG_CONFIG_PATH='%s' pkg-config --define-prefix" % pcdir
    cflags = sh(pc + " --cflags petrel", env=env).strip()
    moduledir = sh(pc + " --variable=moduledir petrel", env=env).strip()
    petreld = os.path.join(prefix, "sbin", "petreld")
    assert os.access(petreld, os.X_OK), "no installed petreld at %s" % petreld
    assert cflags == "-I" + os.path.join(prefix, "include"), cflags
    assert moduledir == os.path.join(prefix, "lib", "petrel", "modules"), moduledir
    for h in ("petrel.h", "version.h", "module.h", "host.h"):
        assert os.path.isfile(os.path.join(prefix, "include", "petrel", h)), h
    _install.update(top=top, prefix=prefix, pcdir=pcdir, pc=pc,
                    petreld=petreld, moduledir=moduledir, cflags=cflags)
    return _install


def build_module(src, out_name):
    """Copy src into an empty directory and build it there with the one
    documented cc line; return the path of the .so."""
    inst = installed()
    work = tempfile.mkdtemp(prefix="build-", dir=inst["top"])
    base = os.path.basename(src)
    shutil.copy(os.path.join(SRCDIR, src), os.path.join(work, base))
    line = "cc -shared -fPIC $(%s --cflags petrel) -o %s %s" % (
        inst["pc"], out_name, base)
    sh(line, cwd=work)
    so = os.path.join(work, out_name)
    assert os.path.isfile(so), so
    return so


class InstalledDaemon(Daemon):
    """A Daemon running the installed petreld, with only the installed
    module directories (module_path in its configuration)."""

    def env(self):
        return clean_env()

    def start(self, timeout=15):
        saved = petrel.PETRELD
        petrel.PETRELD = installed()["petreld"]
        try:
            return Daemon.start(self, timeout)
        finally:
            petrel.PETRELD = saved


def installed_daemon(module_path, filters, modules_extra=""):
    return InstalledDaemon(settings={"module_path": module_path},
                           extra="filters = %s;" % petrel.cfg_value(filters),
                           modules_extra=modules_extra)


def email(subject, attachment=None, body="hello\n"):
    m = EmailMessage()
    m["From"] = "sender@localhost"
    m["To"] = "user@localhost"
    m["Subject"] = subject
    m.set_content(body)
    if attachment:
        name, data = attachment
        m.add_attachment(data, maintype="application", subtype="octet-stream",
                         filename=name)    # base64, multipart/mixed
    return m


def smtp_send(d, msg, to="user@localhost"):
    """Send with smtplib; return (code, text) of the end-of-data reply."""
    with smtplib.SMTP(petrel.HOST, d.port, local_hostname="client.test",
                      timeout=T(20)) as s:
        try:
            s.send_message(msg, from_addr="sender@localhost", to_addrs=[to])
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode("utf-8", "replace")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = list(e.recipients.values())[0]
            return code, text.decode("utf-8", "replace")
        return 250, ""


EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(range(256)) * 4


# ---------------------------------------------------------------------------

def test_install_and_pkg_config():
    inst = installed()
    with open(os.path.join(inst["pcdir"], "petrel.pc")) as f:
        pc = f.read()
    assert re.search(r"^Cflags: -I\$\{includedir\}\s*$", pc, re.M), pc
    assert re.search(r"^moduledir=", pc, re.M), pc
    # the installed headers are exactly the public API
    with open(os.path.join(SRCDIR, "api", "petrel", "version.h"), "rb") as a, \
            open(os.path.join(inst["prefix"], "include", "petrel", "version.h"),
                 "rb") as b:
        assert a.read() == b.read()
    # the installed modules sit in moduledir
    for m in ("mta", "router", "maildir"):
        assert [f for f in os.listdir(inst["moduledir"])
                if f.startswith(m + ".")], (m, os.listdir(inst["moduledir"]))


def test_noexe_built_out_of_tree_refuses_exe():
    inst = installed()
    so = build_module("api/examples/noexe.c", "noexe.so")
    shutil.copy(so, os.path.join(inst["moduledir"], "noexe.so"))
    with installed_daemon(inst["moduledir"], ["noexe"]) as d:
        code, text = smtp_send(d, email("with exe", ("Setup.EXE", EXE)))
        assert code == 554, (code, text)
        assert "5.7.1 Executable attachments are not accepted" in text, text
        d.wait_log(r"noexe: \w+: refused, attachment \"Setup\.EXE\" "
                   r"\(1 refused so far\)")
        # others pass: no attachment, a harmless one, "exe" not at the end
        assert smtp_send(d, email("plain"))[0] == 250
        assert smtp_send(d, email("pdf", ("report.pdf", b"%PDF-1.4 x")))[0] == 250
        assert smtp_send(d, email("close", ("exe.txt", b"text")))[0] == 250
        got = d.wait_delivered("user", 3)
        subjects = sorted(re.search(rb"\nSubject: (.*)\n", g).group(1) for g in got)
        assert subjects == [b"close", b"pdf", b"plain"], subjects
        code, text = smtp_send(d, email("again", ("virus.exe", EXE)))
        assert code == 554, (code, text)
        d.wait_log(r"\"virus\.exe\" \(2 refused so far\)")
        d.assert_nothing_more(3, grace=0.5)
        # the installed petreld found everything in the installed moduledir
        d.wait_log(r"started: .*modules")
        d.stop()      # fini() logs the count
        assert "noexe: 2 messages refused" in d.log_text(), d.log_tail()


def test_noexe_settings():
    inst = installed()
    so = build_module("api/examples/noexe.c", "noexe.so")
    shutil.copy(so, os.path.join(inst["moduledir"], "noexe.so"))
    block = ('  noexe = { reply = "550 5.7.0 no programs please"; '
             'extensions = [ ".exe", ".scr" ]; };')
    with installed_daemon(inst["moduledir"], ["noexe"], block) as d:
        code, text = smtp_send(d, email("scr", ("photo.SCR", EXE)))
        assert (code, text) == (550, "5.7.0 no programs please"), (code, text)
        code, text = smtp_send(d, email("exe", ("a.exe", EXE)))
        assert code == 550, (code, text)
        assert smtp_send(d, email("bat", ("a.bat", b"echo")))[0] == 250
        d.wait_delivered("user", 1)
    # a bad setting is refused before the daemon starts
    with InstalledDaemon(settings={"module_path": inst["moduledir"]},
                         extra='filters = [ "noexe" ];',
                         modules_extra='  noexe = { reply = 5; };',
                         start=False) as d:
        p = subprocess.run([inst["petreld"], "-t", "-c", d.conf],
                           env=clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=T(30))
        err = p.stderr.decode("utf-8", "replace")
        assert p.returncode == 1, (p.returncode, err)
        assert re.search(re.escape(d.conf) + r":\d+: .*reply.*must be a string", err), err


def test_testhooks_built_out_of_tree_hold_discard_header():
    inst = installed()
    so = build_module("tests/modules/hooks.c", "testhooks.so")
    # a directory of our own, named in module_path after the moduledir
    own = os.path.join(inst["top"], "my-modules")
    os.makedirs(own, exist_ok=True)
    shutil.copy(so, os.path.join(own, "testhooks.so"))
    block = ('  testhooks = { add_header = "X-Test: yes"; '
             'hold_if_subject = "hold me"; discard_if_subject = "drop me"; };')
    with installed_daemon(inst["moduledir"] + ":" + own, ["testhooks"],
                          block) as d:
        assert smtp_send(d, email("please hold me"))[0] == 250
        assert smtp_send(d, email("please drop me"))[0] == 250
        assert smtp_send(d, email("deliver me"))[0] == 250
        got = d.wait_delivered("user", 1)
        assert b"\nSubject: deliver me\n" in got[0], got[0][:600]
        head = got[0].split(b"\n\n", 1)[0]
        assert head.endswith(b"\nX-Test: yes"), head
        d.assert_nothing_more(1, grace=1.0)
        held = os.listdir(os.path.join(d.spool, "hold"))
        assert len(held) == 1, held
        with open(os.path.join(d.spool, "hold", held[0]), "rb") as f:
            assert b"please hold me" in f.read()
        d.wait_log(r"discard: .*by filter")
        seq = [m.group(1) for m in
               re.finditer(r"testhooks: hook=(\w+) sid=1\b", d.log_text())]
        assert seq[:3] == ["connect", "helo", "mail"], seq


def test_zz_cleanup():
    if _install.get("top"):
        shutil.rmtree(_install["top"], ignore_errors=True)


if __name__ == "__main__":
    petrel.main()
