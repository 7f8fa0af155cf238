#!/usr/bin/python3
# One file operation for the POSIX comparison suite (test/pem-fs/posix.test.ts), run as whatever user setpriv made
# this process: `posix-op.py ROOT OP ARG...`. Works in ROOT with relative paths under umask 022 and prints one JSON
# object: {"ok": true, ...result} or {"errno": "EACCES"}. Python because it reaches every call the suite needs
# (mknod, access, xattrs, chown) with the errno intact, as any unprivileged user.
import errno
import json
import os
import stat
import sys


def st(s):
    return {"type": stat.S_IFMT(s.st_mode), "mode": oct(stat.S_IMODE(s.st_mode)), "uid": s.st_uid, "gid": s.st_gid,
            "size": s.st_size, "nlink": s.st_nlink}


def write(path, text, flags):
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return {}


def fstat_sequence(path):
    # fstat on a descriptor opened before each change made through other names and descriptors
    fd = os.open(path, os.O_RDONLY)
    try:
        seen = []
        w = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.write(w, b"0123456789")
        os.close(w)
        seen.append(st(os.fstat(fd)))
        os.link(path, path + ".link")
        seen.append(st(os.fstat(fd)))
        os.rename(path + ".link", path + ".moved")
        os.truncate(path + ".moved", 3)
        seen.append(st(os.fstat(fd)))
        os.truncate(path, 70000)
        seen.append(st(os.fstat(fd)))
        os.unlink(path + ".moved")
        seen.append(st(os.fstat(fd)))
        return {"seen": seen, "stat": st(os.stat(path))}
    finally:
        os.close(fd)


def times(path):
    # timestamps through every change: set explicitly, moved by a write (mtime, ctime), chmod moves ctime only
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
    os.utime(path, (1000000, 1000000))
    s0 = os.stat(path)
    with open(path, "ab") as f:
        f.write(b"x")
    s1 = os.stat(path)
    os.chmod(path, 0o600)
    s2 = os.stat(path)
    os.utime(path, (2000000, 3000000))
    s3 = os.stat(path)
    return {"set": [int(s0.st_atime), int(s0.st_mtime)], "write_moves_mtime": s1.st_mtime > s0.st_mtime,
            "write_moves_ctime": s1.st_ctime_ns >= s0.st_ctime_ns, "chmod_keeps_mtime": s2.st_mtime_ns == s1.st_mtime_ns,
            "chmod_moves_ctime": s2.st_ctime_ns >= s1.st_ctime_ns, "explicit": [int(s3.st_atime), int(s3.st_mtime)]}


def blocks(path):
    # st_blocks: a hole takes (almost) nothing, written data takes at least its size, truncation gives it back
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
    os.truncate(path, 10 << 20)
    hole = os.stat(path).st_blocks * 512 < (1 << 20)
    with open(path, "r+b") as f:
        f.write(os.urandom(256 << 10))
        f.flush()
        os.fsync(f.fileno())
    written = os.stat(path).st_blocks * 512 >= (256 << 10)
    os.truncate(path, 4096)
    back = os.stat(path).st_blocks * 512 < (64 << 10)
    return {"hole_is_small": hole, "written_counts": written, "truncated_gives_back": back, "size": os.stat(path).st_size}


ACCESS = {"r": os.R_OK, "w": os.W_OK, "x": os.X_OK, "f": os.F_OK}
NODES = {"fifo": stat.S_IFIFO, "sock": stat.S_IFSOCK, "chr": stat.S_IFCHR, "reg": stat.S_IFREG}


def run(op, a):
    if op == "write":
        return write(a[0], a[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    if op == "append":
        return write(a[0], a[1], os.O_WRONLY | os.O_APPEND)
    if op == "overwrite":
        return write(a[0], a[1], os.O_WRONLY)
    if op == "create":
        os.close(os.open(a[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL, int(a[1], 8)))
        return {"stat": st(os.lstat(a[0]))}
    if op == "read":
        with open(a[0], "rb") as f:
            return {"data": f.read().decode(errors="replace")}
    if op == "mkdir":
        os.mkdir(a[0], int(a[1], 8))
        return {"stat": st(os.lstat(a[0]))}
    if op == "rmdir":
        os.rmdir(a[0])
        return {}
    if op == "unlink":
        os.unlink(a[0])
        return {}
    if op == "rename":
        os.rename(a[0], a[1])
        return {}
    if op == "link":
        os.link(a[0], a[1])
        return {"stat": st(os.lstat(a[1])), "nlink": os.lstat(a[0]).st_nlink}
    if op == "symlink":
        os.symlink(a[0], a[1])
        return {"stat": st(os.lstat(a[1])), "target": os.readlink(a[1])}
    if op == "chmod":
        os.chmod(a[0], int(a[1], 8))
        return {"stat": st(os.lstat(a[0]))}
    if op == "chown":
        os.chown(a[0], int(a[1]), int(a[2]))
        return {"stat": st(os.lstat(a[0]))}
    if op == "truncate":
        os.truncate(a[0], int(a[1]))
        return {"stat": st(os.lstat(a[0]))}
    if op == "utime-now":
        os.utime(a[0])
        return {}
    if op == "utime-set":
        os.utime(a[0], (int(a[1]), int(a[1])))
        s = os.lstat(a[0])
        return {"atime": int(s.st_atime), "mtime": int(s.st_mtime)}
    if op == "stat":
        return {"stat": st(os.lstat(a[0]))}
    if op == "access":
        return {"allowed": os.access(a[0], sum(ACCESS[c] for c in a[1]))}
    if op == "ls":
        return {"names": sorted(os.listdir(a[0]))}
    if op == "mknod":
        mode = NODES[a[1]] | int(a[2], 8)
        os.mknod(a[0], mode, os.makedev(1, 3) if a[1] == "chr" else 0)
        return {"stat": st(os.lstat(a[0]))}
    if op == "setxattr":
        os.setxattr(a[0], a[1], a[2].encode(), follow_symlinks=False)
        return {}
    if op == "getxattr":
        return {"value": os.getxattr(a[0], a[1], follow_symlinks=False).decode()}
    if op == "listxattr":
        return {"names": sorted(n for n in os.listxattr(a[0], follow_symlinks=False) if n.startswith("user."))}
    if op == "removexattr":
        os.removexattr(a[0], a[1], follow_symlinks=False)
        return {}
    if op == "times":
        return times(a[0])
    if op == "blocks":
        return blocks(a[0])
    if op == "fstat-sequence":
        return fstat_sequence(a[0])
    raise SystemExit("unknown op " + op)


def main():
    root, op, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.umask(0o022)
    os.chdir(root)
    try:
        out = run(op, args)
        out["ok"] = True
    except OSError as e:
        out = {"errno": errno.errorcode.get(e.errno, str(e.errno))}
    print(json.dumps(out, sort_keys=True))


main()
