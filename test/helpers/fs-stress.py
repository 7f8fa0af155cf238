# Random file operations for a bounded time (test/pem-fs/stress.test.ts): opens with O_APPEND/O_TRUNC, writes and
# reads at random offsets, truncation, rename, hard and symbolic links, mkdir/rmdir/unlink, listings, xattrs,
# fallocate, copy_file_range, SEEK_DATA/SEEK_HOLE, flock, chmod, utime, fsync — on a few names that collide on
# purpose. Ordinary errors (ENOENT, EEXIST, ENOTEMPTY, ...) are part of the game; a sign that the file system itself
# failed (ENOTCONN, ECONNABORTED: the daemon died; EIO) ends the run with exit code 1.
# Usage: python3 fs-stress.py DIR SECONDS SEED
import os, random, sys, time, errno, fcntl
root, secs, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
names = ['a', 'b', 'c', 'd/x', 'd/y', 'e/f/g', 'd', 'e', 'e/f']
def p(): return os.path.join(root, rng.choice(names))
end = time.monotonic() + secs
fds = []
n = 0
while time.monotonic() < end:
    op = rng.randrange(22)
    try:
        if op == 0: fds.append(os.open(p(), os.O_CREAT | os.O_RDWR | rng.choice([0, os.O_APPEND, os.O_TRUNC]), 0o644))
        elif op == 1 and fds: os.pwrite(rng.choice(fds), os.urandom(rng.randrange(1, 20000)), rng.randrange(0, 50000))
        elif op == 2 and fds: os.pread(rng.choice(fds), rng.randrange(1, 70000), rng.randrange(0, 60000))
        elif op == 3 and fds: os.close(fds.pop(rng.randrange(len(fds))))
        elif op == 4: os.truncate(p(), rng.randrange(0, 40000))
        elif op == 5: os.rename(p(), p())
        elif op == 6: os.link(p(), p())
        elif op == 7: os.symlink(rng.choice(names), p())
        elif op == 8: os.mkdir(p())
        elif op == 9: os.rmdir(p())
        elif op == 10: os.unlink(p())
        elif op == 11: os.listdir(os.path.dirname(p()) or root)
        elif op == 12: os.setxattr(p(), 'user.t', os.urandom(rng.randrange(0, 300)))
        elif op == 13: os.listxattr(p()); os.getxattr(p(), 'user.t')
        elif op == 14 and fds: os.posix_fallocate(rng.choice(fds), rng.randrange(0, 9000), rng.randrange(1, 9000))
        elif op == 15 and len(fds) > 1: os.copy_file_range(fds[0], fds[-1], rng.randrange(1, 9000), rng.randrange(0, 9000), rng.randrange(0, 9000))
        elif op == 16 and fds: os.lseek(rng.choice(fds), rng.randrange(0, 9000), rng.choice([os.SEEK_DATA, os.SEEK_HOLE]))
        elif op == 17 and fds: fcntl.flock(rng.choice(fds), fcntl.LOCK_EX | fcntl.LOCK_NB); fcntl.flock(fds[0], fcntl.LOCK_UN)
        elif op == 18: os.chmod(p(), rng.choice([0o600, 0o644, 0o755]))
        elif op == 19: os.utime(p(), (rng.randrange(1 << 30), rng.randrange(1 << 30)))
        elif op == 20: os.stat(p()); os.lstat(p())
        elif op == 21 and fds: os.fsync(rng.choice(fds)); os.fstat(rng.choice(fds))
        n += 1
    except OSError as e:
        if e.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO): print('file system failed at op', op, e); sys.exit(1)
print(n)
