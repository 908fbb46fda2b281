"""Doubles of the Windows seams, answering with the bytes and objects the documented APIs return.

``FakeWin32`` implements ``platform.windows.win32.Win32``; each IOCTL answer is packed here from
Microsoft's structure reference (independently of the parsers under test):
- GET_LENGTH_INFORMATION, DISK_GEOMETRY_EX, DRIVE_LAYOUT_INFORMATION_EX, PARTITION_INFORMATION_EX,
  NTFS_VOLUME_DATA_BUFFER, VOLUME_BITMAP_BUFFER, RETRIEVAL_POINTERS_BUFFER: learn.microsoft.com,
  "winioctl.h" structure pages;
- paging: "FSCTL_GET_VOLUME_BITMAP control code" (ERROR_MORE_DATA, StartingLcn rounded down to a
  multiple of 8, BitmapSize = clusters left), "FSCTL_GET_RETRIEVAL_POINTERS control code"
  (ERROR_MORE_DATA; ERROR_HANDLE_EOF for a file without clusters);
- reads: "ReadFile function" + "File Buffering" (unbuffered: sector-aligned offsets and lengths,
  else ERROR_INVALID_PARAMETER); a read reaching an unreadable or missing sector fails whole with
  ERROR_SECTOR_NOT_FOUND (the seeds' field observation, docs/windows.md).
``FakePowerShell`` answers the CIM scripts of ``platform.windows`` as Windows PowerShell 5.1's
``ConvertTo-Json -Compress`` prints them (a bare object for one, an array for several, nothing for
none, dates as ``"\\/Date(ms)\\/"``), per "Create method of the Win32_ShadowCopy class" and
"Win32_ShadowCopy class".
"""

from __future__ import annotations

import json
import re
import struct
import uuid
from dataclasses import dataclass, field

from e3backup.platform.windows import ioctl
from e3backup.platform.windows.cim import ShellResult
from e3backup.platform.windows.win32 import (
    ERROR_FILE_NOT_FOUND,
    ERROR_HANDLE_EOF,
    ERROR_INSUFFICIENT_BUFFER,
    ERROR_INVALID_PARAMETER,
    ERROR_MORE_DATA,
    ERROR_SECTOR_NOT_FOUND,
    Win32Error,
)

# -- structures, packed as the reference pages lay them out ------------------------------------------


def length_information(length: int) -> bytes:
    return struct.pack("<q", length)  # GET_LENGTH_INFORMATION { LARGE_INTEGER Length }


def disk_geometry_ex(size: int, sector: int) -> bytes:
    # DISK_GEOMETRY { LARGE_INTEGER Cylinders; MEDIA_TYPE MediaType (FixedMedia = 12);
    # DWORD TracksPerCylinder; DWORD SectorsPerTrack; DWORD BytesPerSector } + LARGE_INTEGER DiskSize
    # + BYTE Data[1] (DISK_PARTITION_INFO and DISK_DETECTION_INFO follow; zeros here)
    return struct.pack("<qIIIIq", size // (255 * 63 * sector), 12, 255, 63, sector, size) + bytes(32)


def gpt_partition_entry(number: int, offset: int, length: int, type_guid: str, part_guid: str, name: str) -> bytes:
    # PARTITION_INFORMATION_EX: PartitionStyle (PARTITION_STYLE_GPT = 1), [pad 4], StartingOffset,
    # PartitionLength, PartitionNumber, RewritePartition, IsServicePartition, [pad 2],
    # PARTITION_INFORMATION_GPT { GUID PartitionType; GUID PartitionId; DWORD64 Attributes; WCHAR Name[36] }
    head = struct.pack("<I4xqqIBB2x", 1, offset, length, number, 0, 0)
    gpt = uuid.UUID(type_guid).bytes_le + uuid.UUID(part_guid).bytes_le + struct.pack("<Q", 0)
    return head + gpt + name.encode("utf-16-le").ljust(72, b"\0")


def mbr_partition_entry(number: int, offset: int, length: int, ptype: int, boot: bool = False) -> bytes:
    # PARTITION_INFORMATION_MBR { BYTE PartitionType; BOOLEAN BootIndicator; BOOLEAN RecognizedPartition;
    # [pad 1]; DWORD HiddenSectors; GUID PartitionId } inside the 112-byte union
    head = struct.pack("<I4xqqIBB2x", 0, offset, length, number, 0, 0)
    mbr = struct.pack("<BBBxI", ptype, int(boot), int(ptype != 0), offset // 512) + bytes(16)
    return head + mbr.ljust(112, b"\0")


def drive_layout_gpt(disk_guid: str, entries: list[bytes], usable: tuple[int, int] = (17408, 0)) -> bytes:
    # DRIVE_LAYOUT_INFORMATION_EX { DWORD PartitionStyle; DWORD PartitionCount;
    # union { DRIVE_LAYOUT_INFORMATION_MBR; DRIVE_LAYOUT_INFORMATION_GPT { GUID DiskId;
    # LARGE_INTEGER StartingUsableOffset; LARGE_INTEGER UsableLength; ULONG MaxPartitionCount } }
    # (padded to 40: the union holds LARGE_INTEGERs); PARTITION_INFORMATION_EX PartitionEntry[] }
    union = uuid.UUID(disk_guid).bytes_le + struct.pack("<qqI", usable[0], usable[1], 128)
    return struct.pack("<II", 1, len(entries)) + union.ljust(40, b"\0") + b"".join(entries)


def drive_layout_mbr(signature: int, entries: list[bytes]) -> bytes:
    union = struct.pack("<II", signature, 0)  # DRIVE_LAYOUT_INFORMATION_MBR { Signature; CheckSum }
    return struct.pack("<II", 0, len(entries)) + union.ljust(40, b"\0") + b"".join(entries)


def ntfs_volume_data(total_clusters: int, cluster: int, sector: int = 512) -> bytes:
    # NTFS_VOLUME_DATA_BUFFER: VolumeSerialNumber, NumberSectors, TotalClusters, FreeClusters,
    # TotalReserved (LARGE_INTEGER each), BytesPerSector, BytesPerCluster, BytesPerFileRecordSegment,
    # ClustersPerFileRecordSegment (DWORD each), MftValidDataLength, MftStartLcn, Mft2StartLcn,
    # MftZoneStart, MftZoneEnd (LARGE_INTEGER each)
    return struct.pack("<qqqqqIIIIqqqqq", 0x1234, total_clusters * cluster // sector, total_clusters, 0, 0,
                       sector, cluster, 1024, 0, 0, 4, 2, 0, 0)


# -- the device/file model -------------------------------------------------------------------------


@dataclass
class FakeFile:
    """A file on a fake volume, for FSCTL_GET_RETRIEVAL_POINTERS: [(NextVcn, Lcn)]."""

    extents: list[tuple[int, int]]


@dataclass
class FakeDevice:
    data: bytes
    sector: int = 512
    reported_size: int | None = None  # IOCTL length (larger than data: the tail cannot be read)
    bad: set[int] = field(default_factory=set)  # offsets of sectors failing ERROR_SECTOR_NOT_FOUND
    layout: bytes | None = None
    bitmap: bytes | None = None  # the volume's $Bitmap (LSB first)
    cluster: int = 4096
    total_clusters: int = 0
    geometry: bool = True  # answers IOCTL_DISK_GET_DRIVE_GEOMETRY_EX

    @property
    def size(self) -> int:
        return len(self.data) if self.reported_size is None else self.reported_size


class FakeWin32:
    def __init__(self) -> None:
        self.devices: dict[str, FakeDevice] = {}
        self.files: dict[str, FakeFile] = {}
        self.handles: dict[int, str] = {}
        self._next = 100
        self.calls: list[tuple[str, object]] = []
        self.connections: dict[str, tuple[str | None, str | None]] = {}
        self.connect_error = 0
        self.cancel_error = 0

    def open_device(self, path: str) -> int:
        if path not in self.devices and path not in self.files:
            raise Win32Error("CreateFileW", ERROR_FILE_NOT_FOUND, path)
        self._next += 1
        self.handles[self._next] = path
        self.calls.append(("open", path))
        return self._next

    def close(self, handle: int) -> None:
        self.handles.pop(handle)

    def read(self, handle: int, offset: int, view: memoryview) -> tuple[int, int]:
        dev = self.devices[self.handles[handle]]
        self.calls.append(("read", (offset, len(view))))
        if offset % dev.sector or len(view) % dev.sector:
            return ERROR_INVALID_PARAMETER, 0
        if offset >= dev.size:
            return 0, 0
        end = min(offset + len(view), dev.size)
        for s in range(offset, end, dev.sector):
            if s in dev.bad or s + dev.sector > len(dev.data):
                return ERROR_SECTOR_NOT_FOUND, 0
        view[: end - offset] = dev.data[offset:end]
        return 0, end - offset

    def device_io_control(self, handle: int, code: int, in_buffer: bytes, out_size: int) -> tuple[int, bytes]:
        path = self.handles[handle]
        self.calls.append(("ioctl", code))
        if path in self.files:
            return self._retrieval(self.files[path], in_buffer, out_size)
        dev = self.devices[path]
        if code == ioctl.IOCTL_DISK_GET_LENGTH_INFO:
            return 0, length_information(dev.size)
        if code == ioctl.IOCTL_DISK_GET_DRIVE_GEOMETRY_EX:
            return (0, disk_geometry_ex(dev.size, dev.sector)) if dev.geometry else (ERROR_INVALID_PARAMETER, b"")
        if code == ioctl.IOCTL_DISK_GET_DRIVE_LAYOUT_EX:
            if dev.layout is None:
                return ERROR_INVALID_PARAMETER, b""
            if out_size < len(dev.layout):
                return ERROR_INSUFFICIENT_BUFFER, b""
            return 0, dev.layout
        if code == ioctl.FSCTL_ALLOW_EXTENDED_DASD_IO:
            return 0, b""
        if code == ioctl.FSCTL_GET_NTFS_VOLUME_DATA:
            if dev.bitmap is None:
                return ERROR_INVALID_PARAMETER, b""
            return 0, ntfs_volume_data(dev.total_clusters, dev.cluster)
        if code == ioctl.FSCTL_GET_VOLUME_BITMAP:
            return self._bitmap(dev, in_buffer, out_size)
        return ERROR_INVALID_PARAMETER, b""

    @staticmethod
    def _bitmap(dev: FakeDevice, in_buffer: bytes, out_size: int) -> tuple[int, bytes]:
        assert dev.bitmap is not None
        (lcn,) = struct.unpack("<q", in_buffer)
        if lcn >= dev.total_clusters:
            return ERROR_INVALID_PARAMETER, b""
        start = lcn - lcn % 8  # "rounded down to a multiple of 8"
        remaining = dev.total_clusters - start
        room_bits = (out_size - 16) * 8
        bits = min(remaining, room_bits)
        body = dev.bitmap[start // 8 : start // 8 + -(-bits // 8)]
        out = struct.pack("<qq", start, remaining) + body
        return (ERROR_MORE_DATA if bits < remaining else 0), out

    @staticmethod
    def _retrieval(f: FakeFile, in_buffer: bytes, out_size: int) -> tuple[int, bytes]:
        (vcn,) = struct.unpack("<q", in_buffer)
        if not f.extents:
            return ERROR_HANDLE_EOF, b""
        first = 0
        prev = 0
        for i, (next_vcn, _lcn) in enumerate(f.extents):
            if next_vcn > vcn:
                first, start_vcn = i, prev
                break
            prev = next_vcn
        else:
            return ERROR_HANDLE_EOF, b""
        room = (out_size - 16) // 16
        chosen = f.extents[first : first + room]
        out = struct.pack("<I4xq", len(chosen), start_vcn) + b"".join(struct.pack("<qq", n, lcn) for n, lcn in chosen)
        return (ERROR_MORE_DATA if first + room < len(f.extents) else 0), out

    def add_connection(self, remote: str, user: str | None, password: str | None) -> int:
        self.calls.append(("connect", (remote, user)))
        if self.connect_error:
            return self.connect_error
        self.connections[remote] = (user, password)
        return 0

    def cancel_connection(self, remote: str) -> int:
        self.calls.append(("disconnect", remote))
        self.connections.pop(remote, None)
        return self.cancel_error


# -- PowerShell 5.1 with CIM ------------------------------------------------------------------------


def ps51_json(objs: list[dict[str, object]]) -> str:
    """What ``... | ConvertTo-Json -Compress`` prints in Windows PowerShell 5.1: nothing for no
    objects, a bare object for one, an array for several; '/' in strings escaped as '\\/'."""
    if not objs:
        return ""
    doc = objs[0] if len(objs) == 1 else objs
    return json.dumps(doc, separators=(",", ":")).replace("/", "\\/") + "\r\n"


@dataclass
class FakeShadow:
    id: str
    volume: str
    n: int
    install_ms: int = 1764768000000


class FakePowerShell:
    """Win32_ShadowCopy through Invoke-CimMethod / Get-CimInstance / Remove-CimInstance."""

    def __init__(self) -> None:
        self.shadows: dict[str, FakeShadow] = {}
        self.create_code = 0
        self.fail_delete = 0  # the next N deletions fail
        self.scripts: list[str] = []
        self._n = 0

    def add_foreign(self, volume: str = "C:\\") -> str:
        """A shadow copy someone else made (System Restore, another backup tool)."""
        return self._make(volume).id

    def _make(self, volume: str) -> FakeShadow:
        self._n += 1
        sid = "{" + str(uuid.UUID(int=0xE3B0 << 100 | self._n)).upper() + "}"
        self.shadows[sid] = FakeShadow(sid, volume, self._n)
        return self.shadows[sid]

    def device_object(self, sid: str) -> str:
        return f"\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy{self.shadows[sid].n}"

    def _row(self, s: FakeShadow) -> dict[str, object]:
        return {"ID": s.id, "DeviceObject": self.device_object(s.id),
                "VolumeName": "\\\\?\\Volume{4c1b02c1-d990-11dc-99ae-806e6f6e6963}\\",
                "InstallDate": f"/Date({s.install_ms})/"}

    def run(self, script: str) -> ShellResult:
        self.scripts.append(script)
        m = re.search(r"-MethodName Create -Arguments @\{Volume='((?:[^']|'')*)'; Context='ClientAccessible'\}", script)
        if m:
            if self.create_code:
                return ShellResult(0, ps51_json([{"ReturnValue": self.create_code, "ShadowID": None}]), "")
            return ShellResult(0, ps51_json([{"ReturnValue": 0, "ShadowID": self._make(m.group(1)).id}]), "")
        f = re.search(r"-Filter 'ID=''(\{[0-9A-F-]+\})'''", script)
        if "Remove-CimInstance" in script:
            assert f, script
            if self.fail_delete:
                self.fail_delete -= 1
                return ShellResult(1, "", "Remove-CimInstance : Generic failure \r\n")
            self.shadows.pop(f.group(1), None)
            return ShellResult(0, "", "")
        if "Get-CimInstance -ClassName Win32_ShadowCopy" in script:
            rows = [self._row(s) for s in self.shadows.values() if f is None or s.id == f.group(1)]
            return ShellResult(0, ps51_json(rows), "")
        raise AssertionError(f"unexpected script: {script}")
