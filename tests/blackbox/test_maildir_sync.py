#!/usr/bin/env python3
"""New maildir directories are synced into their parents (issue 7, item 9).

A delivery into a maildir that did not exist makes the domain directory,
the maildir and its tmp/, new/, cur/.  The file is fsynced and new/ is
fsynced after the rename, but unless each directory made is also synced
into its parent, a crash can lose the whole maildir -- and the mail
reported delivered in it.  modules/maildir/maildir.c now fsyncs the
parent of every directory it makes, before the delivery is done.

Shown with strace on the daemon (-f: deliveries run on worker threads;
-y: fds as paths): for each directory made there must be an fsync of its
parent after the mkdir and before the rename into new/.  On the tree
before the fix (43c3e2b, or main before this test) the only directory
synced is new/.  A second delivery into the same maildir makes nothing
and syncs no parent.
"""

import os
import re
import shutil
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message  # noqa: E402

STRACE = "/usr/bin/strace"
CALL = re.compile(r'^(\d+)\s+(mkdir|mkdirat|fsync|fdatasync|rename|renameat|renameat2)\((.*)')


def traced_daemon():
    """A daemon started under strace (the wrapper is what the harness runs)."""
    d = Daemon(start=False)
    d.trace = os.path.join(d.dir, "strace.out")
    wrapper = os.path.join(d.dir, "petreld-traced")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nexec %s -f -qq -y -o %s -e trace=mkdir,mkdirat,fsync,fdatasync,'
                'rename,renameat,renameat2 %s "$@"\n' % (STRACE, d.trace, petrel.PETRELD))
    os.chmod(wrapper, stat.S_IRWXU)
    real = petrel.PETRELD
    petrel.PETRELD = wrapper
    try:
        d.start(timeout=30)
    finally:
        petrel.PETRELD = real
    return d


def events(d):
    """(call, path) in order: mkdir's path, fsync's fd path, rename's target."""
    out = []
    with open(d.trace, errors="replace") as f:
        for line in f:
            m = CALL.match(line)
            if not m or "= -1" in line and m.group(2).startswith("mkdir"):
                continue
            call, args = m.group(2), m.group(3)
            if call.startswith("mkdir"):
                p = re.search(r'"([^"]*)"', args)
                if p and " = 0" in line:
                    out.append(("mkdir", p.group(1)))
            elif call.startswith("fsync") or call == "fdatasync":
                p = re.match(r'\d+<([^>]*)>', args)
                if p:
                    out.append(("fsync", p.group(1)))
            else:
                ps = re.findall(r'"([^"]*)"', args)
                if ps:
                    out.append(("rename", ps[-1]))
    return out


def stop_traced(d):
    # SIGTERM reaches strace, which ends its tracee; the harness then
    # clears the process group
    d._terminate_quietly()


def test_new_maildir_directories_synced_into_parents():
    petrel.need_tool(STRACE)
    d = traced_daemon()
    try:
        petrel.send_one(d.port, "s@localhost", "fresh@localhost", make_message("first"))
        d.wait_delivered("fresh", 1)
        petrel.send_one(d.port, "s@localhost", "fresh@localhost", make_message("second"))
        d.wait_delivered("fresh", 2)
        ev = events(d)
    finally:
        stop_traced(d)
    md = d.maildir("fresh")
    dom = os.path.dirname(md)
    made = [p for c, p in ev if c == "mkdir" and p.startswith(dom)]
    for want in (dom, md, md + "/tmp", md + "/new", md + "/cur"):
        assert want in made, "%s not made by the daemon: %s" % (want, made)
    renames = [i for i, (c, p) in enumerate(ev) if c == "rename" and p.startswith(md + "/new/")]
    assert len(renames) == 2, [e for e in ev if e[0] == "rename"]
    first = renames[0]
    for p in made:
        i = ev.index(("mkdir", p))
        parent = os.path.dirname(p)
        synced = [j for j in range(i + 1, first) if ev[j] == ("fsync", parent)]
        assert synced, "%s made but its parent %s never synced before the delivery " \
            "(fsyncs: %s)" % (p, parent, [e[1] for e in ev if e[0] == "fsync"])
    # the second delivery makes nothing and syncs only its file and new/
    between = ev[first + 1:renames[1]]
    assert not [e for e in between if e[0] == "mkdir" and e[1].startswith(dom)], between
    assert not [e for e in between if e == ("fsync", md) or e == ("fsync", dom)], between
    if not d.keep:
        shutil.rmtree(d.dir, ignore_errors=True)


if __name__ == "__main__":
    petrel.main()
