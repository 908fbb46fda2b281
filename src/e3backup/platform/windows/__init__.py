"""The Windows platform layer: thin adapters over Win32, WMI/CIM and the service manager.

    win32.py      the ``Win32`` seam (CreateFileW, DeviceIoControl, ReadFile, CloseHandle,
                  WNetAddConnection2W / WNetCancelConnection2W) and its ctypes implementation
    ioctl.py      IOCTL/FSCTL codes and the structures they return, parsed from bytes
    rawdisk.py    a disk, volume or shadow copy read sector-aligned, with the tail rule
    volume.py     used clusters (FSCTL_GET_VOLUME_BITMAP, paged) and file extents
                  (FSCTL_GET_RETRIEVAL_POINTERS) of a volume
    vss.py        ClientAccessible shadow copies through WMI (Win32_ShadowCopy), the sweep
    vssapi.py     the VSS requester seam (IVssBackupComponents, IVssAsync): codes, records
    vsscom.py     its ctypes implementation over the COM vtables (never run on Windows yet)
    cim.py        CIM objects as PowerShell 5.1 ``ConvertTo-Json`` prints them; the runner seam
    inventory.py  volumes and physical disks for the job wizard
    shares.py     UNC sources connected for a run only
    service.py    the Windows service (pywin32)

Every OS call goes through a seam (``Win32``, ``PowerShell``) so Linux tests drive this layer with
doubles that replay the documented bytes and objects. None of it has run on a real Windows
machine yet (docs/windows.md); ``pytest -m windows`` is the group to run there.
"""
