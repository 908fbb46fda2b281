"""`DirectWriter`: whole pages go past the page cache, partial pages through it; the bytes are the same
either way, from any thread, at any offset, and a file system without O_DIRECT loses nothing."""

from __future__ import annotations

import errno
import itertools
import os
import random
import threading
from pathlib import Path

import pytest

from e3backup.formats import direct
from e3backup.formats.direct import ALIGN, DirectWriter, address_of, aligned_buffer
from e3backup.formats.raw import RawWriter


def _open(path: Path, size: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    os.ftruncate(fd, size)
    return fd


def _refuse_direct_writes(monkeypatch: pytest.MonkeyPatch, cached_fd: int) -> None:
    """Writes to any descriptor but the cached one fail with EINVAL, as on a file system that
    accepts O_DIRECT at open but not at the first write."""
    real = direct.pwrite_all

    def refuse_direct(target: int, data: memoryview, offset: int) -> None:
        if target != cached_fd:
            raise OSError(errno.EINVAL, "Invalid argument")
        real(target, data, offset)

    monkeypatch.setattr(direct, "pwrite_all", refuse_direct)


def test_aligned_buffer_is_page_aligned_and_zeroed() -> None:
    buf = aligned_buffer(10_000)
    assert len(buf) == 3 * ALIGN and address_of(buf) % ALIGN == 0 and not any(buf)
    big = aligned_buffer((4 << 20) + ALIGN)  # huge pages asked for: whole 2 MiB units
    assert len(big) == 6 << 20 and address_of(big) % ALIGN == 0 and not any(big)
    big[-1:] = b"x"  # private memory, writable to the end
    assert big[-1] == ord("x")


def test_direct_is_used_on_this_file_system(tmp_path: Path) -> None:
    """The suite's temporary directory is on ext4 here, so the tests below exercise O_DIRECT."""
    fd = _open(tmp_path / "f", ALIGN)
    try:
        w = DirectWriter(str(tmp_path / "f"), fd)
        assert w.direct
        w.close()
    finally:
        os.close(fd)


@pytest.mark.parametrize("use_direct", [True, False])
def test_concurrent_unaligned_writes_land_exactly(tmp_path: Path, use_direct: bool) -> None:
    """Ranges of every alignment (some sharing a page with a neighbour written by another thread),
    from unaligned and aligned memory, written by 6 threads in random order."""
    rnd = random.Random(1)
    size = 6 << 20
    cuts = {0, size, *(rnd.randrange(size) for _ in range(60))}
    cuts = sorted(cuts | {rnd.randrange(size // ALIGN) * ALIGN for _ in range(20)})
    ranges = list(itertools.pairwise(cuts))
    expected = bytearray(size)
    pieces = []
    for start, end in ranges:
        data = rnd.randbytes(end - start)
        expected[start:end] = data
        if rnd.random() < 0.5:  # already aligned memory: written without a copy
            buf = aligned_buffer(len(data))
            buf[: len(data)] = data
            pieces.append((start, buf[: len(data)]))
        else:
            pieces.append((start, memoryview(data)))
    rnd.shuffle(pieces)
    path = tmp_path / "target"
    fd = _open(path, size)
    w = DirectWriter(str(path), fd, direct=use_direct)
    assert w.direct is use_direct
    it = iter(pieces)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                item = next(it, None)
            if item is None:
                return
            w.write(item[1], item[0])

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    os.fsync(fd)
    os.close(fd)
    assert path.read_bytes() == bytes(expected)


def test_a_file_system_refusing_o_direct_at_open_gets_cached_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tmpfs before Linux 6.6 and some FUSE file systems fail the open with EINVAL."""
    path = tmp_path / "f"
    fd = _open(path, 3 * ALIGN)
    real_open = os.open

    def no_direct(p: str, flags: int, *a: int) -> int:
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(p, flags, *a)

    monkeypatch.setattr(os, "open", no_direct)
    w = DirectWriter(str(path), fd)
    assert not w.direct
    w.write(memoryview(b"x" * (2 * ALIGN)), 100)
    w.close()
    os.close(fd)
    assert path.read_bytes() == bytes(100) + b"x" * (2 * ALIGN) + bytes(ALIGN - 100)


def test_a_refused_direct_write_is_written_through_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that accepts O_DIRECT at open but refuses the write (EINVAL): that write and
    every later one go through the cache, and no byte is lost."""
    path = tmp_path / "f"
    fd = _open(path, 4 * ALIGN)
    w = DirectWriter(str(path), fd)
    assert w.direct
    _refuse_direct_writes(monkeypatch, fd)
    w.write(memoryview(b"a" * (2 * ALIGN)), 0)
    assert not w.direct
    w.write(memoryview(b"b" * (2 * ALIGN)), 2 * ALIGN)
    w.close()
    os.close(fd)
    assert path.read_bytes() == b"a" * (2 * ALIGN) + b"b" * (2 * ALIGN)


def test_other_write_errors_are_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    fd = _open(path, 2 * ALIGN)
    w = DirectWriter(str(path), fd)

    def no_space(target: int, data: memoryview, offset: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct, "pwrite_all", no_space)
    with pytest.raises(OSError, match="No space"):
        w.write(memoryview(b"a" * ALIGN), 0)
    w.close()
    os.close(fd)



def test_direct_writes_leave_the_rest_a_hole(tmp_path: Path) -> None:
    path = tmp_path / "sparse"
    fd = _open(path, 64 << 20)
    w = DirectWriter(str(path), fd)
    data = memoryview(os.urandom(1 << 20))
    for off in (0, 20 << 20, 63 << 20):
        w.write(data, off)
    w.close()
    os.fsync(fd)
    os.close(fd)
    assert os.stat(path).st_blocks * 512 <= 4 << 20
    with open(path, "rb") as f:
        for off in (0, 20 << 20, 63 << 20):
            f.seek(off)
            assert f.read(1 << 20) == data
        f.seek(1 << 20)
        assert f.read(1 << 20) == bytes(1 << 20)


def _blocks(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_preallocation_allocates_then_punches_what_stayed_zero(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = _open(path, 64 << 20)
    pre = direct.Preallocation(fd, [(0, 8 << 20), (32 << 20, 8 << 20)])
    assert pre.active and _blocks(path) >= 16 << 20  # allocated before anything is written
    os.pwrite(fd, b"d" * (1 << 20), 0)
    os.pwrite(fd, b"e" * (1 << 20), 32 << 20)
    pre.skipped(1 << 20, 7 << 20)
    pre.skipped(33 << 20, 7 << 20)
    pre.finish()
    os.fsync(fd)
    assert _blocks(path) <= 2 << 20  # only what was written stays allocated
    os.close(fd)
    data = path.read_bytes()
    assert data[: 1 << 20] == b"d" * (1 << 20) and data[32 << 20 : 33 << 20] == b"e" * (1 << 20)
    assert data.count(0) == len(data) - (2 << 20)


def test_preallocation_that_fails_half_way_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No room for every range (ENOSPC) or no support: what was allocated is punched out again,
    and recording skipped ranges does nothing."""
    real = direct._fallocate
    assert real is not None
    calls: list[tuple[int, int, int]] = []

    def second_fails(fd: int, mode: int, offset: int, length: int) -> int:
        calls.append((mode, offset, length))
        if mode == 1 and len([c for c in calls if c[0] == 1]) == 2:
            return -1
        return real(fd, mode, offset, length)

    monkeypatch.setattr(direct, "_fallocate", second_fails)
    path = tmp_path / "f"
    fd = _open(path, 64 << 20)
    pre = direct.Preallocation(fd, [(0, 8 << 20), (32 << 20, 8 << 20)])
    assert not pre.active and _blocks(path) == 0
    pre.skipped(0, 4096)
    pre.finish()
    assert calls[-1] == (3, 0, 8 << 20)  # the first range punched back, nothing after
    os.close(fd)


def test_raw_writer_handles_share_the_preallocation_and_end_sparse(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    size, chunk = 32 << 20, 4 << 20
    rnd = random.Random(3)
    expected = bytearray(size)
    for i in range(0, size, chunk):
        for j in range(i, i + chunk, 1 << 20):
            if rnd.random() < 0.5:
                expected[j : j + (1 << 20)] = rnd.randbytes(1 << 20)
    shared = RawWriter(path, size, [(0, size)])
    handles = [shared.reopen() for _ in range(3)]
    threads = []
    for n, h in enumerate(handles):
        def work(h: RawWriter = h, n: int = n) -> None:
            for i in range(n * chunk, size, 3 * chunk):
                h.write_at(i, memoryview(expected)[i : i + chunk])

        threads.append(threading.Thread(target=work))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for h in handles:
        h.close()
    shared.close()
    assert path.read_bytes() == bytes(expected)
    written = sum(1 << 20 for j in range(0, size, 1 << 20) if any(expected[j : j + (1 << 20)]))
    assert _blocks(path) <= written + (1 << 20)


def test_a_shared_writer_survives_direct_writes_being_refused_while_others_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The VHDX writer shares one DirectWriter: when one thread meets EINVAL and turns direct
    writes off, threads already on their way must fall back too, not fail."""
    path = tmp_path / "shared"
    size = 64 * ALIGN * 8
    fd = _open(path, size)
    w = DirectWriter(str(path), fd)
    _refuse_direct_writes(monkeypatch, fd)
    pieces = [(i * 64 * ALIGN + 100, memoryview(bytes([i + 1]) * (64 * ALIGN - 200))) for i in range(8)]
    errors: list[BaseException] = []

    def work(off: int, data: memoryview) -> None:
        try:
            for _ in range(20):
                w.write(data, off)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=p) for p in pieces]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    os.close(fd)
    assert errors == [] and not w.direct
    got = path.read_bytes()
    for off, data in pieces:
        assert got[off : off + len(data)] == data


def test_skipped_ranges_that_touch_are_punched_in_one_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = direct._fallocate
    assert real is not None
    punches: list[tuple[int, int]] = []

    def record(fd: int, mode: int, offset: int, length: int) -> int:
        if mode & 2:
            punches.append((offset, length))
        return real(fd, mode, offset, length)

    monkeypatch.setattr(direct, "_fallocate", record)
    path = tmp_path / "f"
    fd = _open(path, 1 << 20)
    pre = direct.Preallocation(fd, [(0, 1 << 20)])
    for off in (3 * 65536, 65536, 2 * 65536, 8 * 65536):  # any order, from any thread
        pre.skipped(off, 65536)
    pre.finish()
    os.close(fd)
    assert punches == [(65536, 3 * 65536), (8 * 65536, 65536)]


def test_raw_writer_without_direct_writes_through_the_cache_and_allocates_nothing(tmp_path: Path) -> None:
    """What a one-worker restore uses: no O_DIRECT, no up-front allocation, same for its handles."""
    path = tmp_path / "cached.raw"
    shared = RawWriter(path, 8 << 20, [(0, 8 << 20)], direct=False)
    handle = shared.reopen()
    assert not shared._out.direct and not handle._out.direct and shared._prealloc is None
    assert _blocks(path) == 0
    handle.write_at(4 << 20, memoryview(b"c" * (1 << 20)))
    handle.close()
    shared.close()
    assert path.read_bytes() == bytes(4 << 20) + b"c" * (1 << 20) + bytes(3 << 20)
