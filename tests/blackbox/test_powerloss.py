#!/usr/bin/env python3
"""Power loss: every message that got 250 survives a power cut at any instant.

The spool and the maildirs live on their own ext4 filesystem (a loop device
made by the test).  Mid-load, the test cuts the power the way xfstests does
(`godown`): ext4's shutdown ioctl with EXT4_GOING_FLAGS_NOLOGFLUSH stops
the filesystem as the disk has it, so that every write not yet synced is
lost, journal included.  petreld is killed, the filesystem unmounted and
mounted again (the journal replays), and petreld started on what is left.

What must hold: every acknowledged message is delivered with its exact
body; a message never acknowledged is delivered only if it was in flight.
Queue slots caught half written are freed, never delivered as mail.
Needs root and loop devices; skipped otherwise.
"""

import fcntl
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, diag, make_message  # noqa: E402
from test_durability import Load, audit, wait_qids, wait_stable  # noqa: E402

EXT4_IOC_SHUTDOWN = 0x8004587D          # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2         # drop everything not on disk yet


class Ext4:
    """A small ext4 on a loop device, mounted on a temp dir."""

    def __init__(self, size_mb=256):
        if os.geteuid() != 0:
            petrel.skip("needs root (loop device and mount)")
        for tool in ("mkfs.ext4", "mount", "umount"):
            if not shutil.which(tool):
                petrel.skip("%s not installed" % tool)
        self.dir = tempfile.mkdtemp(prefix="petrel-pl-")
        self.img = os.path.join(self.dir, "fs.img")
        self.mnt = os.path.join(self.dir, "mnt")
        os.makedirs(self.mnt)
        with open(self.img, "wb") as f:
            f.truncate(size_mb << 20)
        p = subprocess.run(["mkfs.ext4", "-q", "-F", self.img],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        self.mounted = False
        self.mount()

    def mount(self):
        p = subprocess.run(["mount", "-o", "loop", self.img, self.mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            petrel.skip("cannot mount a loop device here: %s" % p.stderr.strip())
        self.mounted = True

    def umount(self):
        p = subprocess.run(["umount", self.mnt], capture_output=True, text=True)
        assert p.returncode == 0, "umount: %s" % p.stderr
        self.mounted = False

    def power_cut(self):
        fd = os.open(self.mnt, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN,
                        struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        finally:
            os.close(fd)

    def close(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def on_fs(d, fs, names=("spool", "mail")):
    """Move the daemon's spool and/or maildirs onto fs (before its start)."""
    for name in names:
        path = getattr(d, name)
        target = os.path.join(fs.mnt, name)
        os.makedirs(target, exist_ok=True)
        os.rmdir(path)
        os.symlink(target, path)


def corrupt_files(d):
    cdir = os.path.join(d.spool, "corrupt")
    return sorted(os.listdir(cdir)) if os.path.isdir(cdir) else []


def block_mailbox(d, user):
    """A file where the maildir should be: deliveries to user defer."""
    os.makedirs(os.path.join(d.mail, "localhost"), exist_ok=True)
    path = os.path.join(d.mail, "localhost", user)
    with open(path, "w") as f:
        f.write("not a directory\n")
    os.sync()
    return path


def power_loss_run(acks_before_cut, sessions, blocked=False):
    """blocked: deliveries defer until after the restart, so that every
    acknowledged message lives only in the spool when the power goes."""
    fs = Ext4()
    try:
        settings = {"retry_initial": 1, "retry_max": 1} if blocked else {}
        with Daemon(settings=settings, start=False) as d:
            on_fs(d, fs)
            blocker = block_mailbox(d, "user") if blocked else None
            d.start()
            load = Load(d.port, sessions=sessions, per_session=100000).start()
            load.wait_acked(acks_before_cut)
            fs.power_cut()
            # From here on, nothing reaches the disk: syncs fail, and a
            # session must not get 250 for what cannot be made durable.
            d.kill9()
            load.stop.set()
            load.join(timeout=60)
            fs.umount()
            fs.mount()
            leftovers = corrupt_files(d)
            if blocked:
                os.unlink(blocker)
            d.start()
            wait_qids(d, load.acked, timeout=60)
            wait_stable(d, quiet=1.0)
            dups, _ = audit(d, load)
            moved = [c for c in corrupt_files(d) if c not in leftovers]
            diag("power cut after %d acks (%d acked in all): duplicates %d, "
                 "files moved to corrupt/ %d" % (acks_before_cut, len(load.acked),
                                                len(dups), len(moved)))
            # the daemon works on after it
            q = petrel.send_one(d.port, "a@localhost", "after@localhost",
                                make_message("after the power cut"))
            assert petrel.qid_of_file(d.wait_delivered("after", 1)[0]) == q
            d.stop()
    finally:
        fs.close()


def test_power_cut_spool_only():
    power_loss_run(acks_before_cut=200, sessions=20, blocked=True)


def test_power_cut_early():
    power_loss_run(acks_before_cut=30, sessions=10)


def test_power_cut_under_load():
    power_loss_run(acks_before_cut=300, sessions=20)


if __name__ == "__main__":
    petrel.main()
