"""``verify``: re-read the finished target and check every chunk against the snapshot.

Data chunks are checked against their blob IDs in batches of multi-buffer hashes (``hash_batches``,
as the restore does), zero chunks must read all zero. A VHDX is read through the VHDX reader, a
block device raw. Every mismatch is collected; the error names the first five.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import IntegrityError
from ...formats.direct import ALIGN
from ...formats.factory import open_image_reader
from ...formats.image import ImageReader, is_zero
from ...formats.raw import RawReader
from ...repo.hashing import sha256_many
from ..hash_batches import HashBatches
from ..target import Target
from .options import ImageRestoreOptions, ImageRestoreResult
from .plan import RestorePlan, Segment
from .sizing import restore_sizing
from .workers import Stops, run_jobs


@dataclass(frozen=True)
class ReadBack:
    """A data chunk read back from the target for ``verify``, at the start of its pool ``buffer``."""

    index: int
    offset: int
    want: bytes
    data: memoryview
    buffer: memoryview


def verify_target(
    plan: RestorePlan, target: Target, opts: ImageRestoreOptions, result: ImageRestoreResult, stops: Stops
) -> None:
    """Check the target against the plan; ``IntegrityError`` naming the chunks that differ."""
    img = plan.image
    expected = min(img.device_size, opts.size_limit or img.device_size)
    zero_ids = img.zero_ids()
    failures: list[str] = []
    mu = threading.Lock()

    def open_reader() -> ImageReader:
        if target.is_block_device:
            return RawReader(opts.target, expected)
        return open_image_reader(opts.target)

    readers: list[ImageReader] = [open_reader() for _ in range(opts.workers)]

    def fail(i: int, off: int, want: bytes) -> None:
        with mu:
            failures.append(f"chunk {i} at offset {off}: content differs from blob {want.hex()}")

    def check(batch: list[ReadBack]) -> None:
        for r, digest in zip(batch, sha256_many([r.data for r in batch]), strict=True):
            if digest != r.want:
                fail(r.index, r.offset, r.want)
        with mu:
            result.chunks_verified += len(batch)

    # the read-back buffers count against the memory budget as the restore's decoded blobs do
    pool = restore_sizing(opts.memory, opts.workers, img.chunk_size + ALIGN, local=True).pool
    batches: HashBatches[ReadBack] = HashBatches(img.chunk_size + ALIGN, opts.workers, stops.stop, check, buffers=pool)

    def make_job(reader: ImageReader) -> Callable[[Segment], None]:
        def job(seg: Segment) -> None:
            for i in range(seg.first, seg.end):
                off, n = img.chunk_span(i)
                want = img.content[i]
                buffer = batches.take()
                with batches.back_on_error(buffer):
                    reader.read_into(off, buffer[:n])
                if want in zero_ids:  # must read all zero: no hash needed
                    if not is_zero(buffer[:n]):
                        fail(i, off, want)
                    batches.release([buffer])
                    with mu:
                        result.chunks_verified += 1
                    continue
                ready = batches.add(ReadBack(i, off, want, buffer[:n], buffer))
                if ready:
                    batches.check(ready)

        return job

    try:
        if readers and readers[0].virtual_size != expected:
            raise IntegrityError(f"verify: {opts.target} holds {readers[0].virtual_size} bytes, expected {expected}")
        run_jobs(plan.segments, [make_job(rd) for rd in readers], stops, "image verify", finish=batches.finish)
    finally:
        for rd in readers:
            rd.close()
    if failures:
        failures.sort(key=lambda s: int(s.split()[1]))
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise IntegrityError(f"verify of {opts.target} failed: {'; '.join(failures[:5])}{more}")
    result.verified = True


__all__ = ["ReadBack", "verify_target"]
