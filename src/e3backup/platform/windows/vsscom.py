"""``IVssBackupComponents`` over its COM vtable with ctypes (Windows only): the ``BackupComponents`` seam.

No binding package: the interfaces are plain ``IUnknown`` vtables (no type library, no
``IDispatch``), so each call is a ``WINFUNCTYPE`` over the slot ``vsbackup.h`` declares it in.
Slot numbers count ``QueryInterface``, ``AddRef``, ``Release`` as 0-2 and then follow the
declaration order of the Windows SDK's ``vsbackup.h`` / ``vswriter.h`` (checked against
mingw-w64's ``vsbackup.h``, generated from the same declarations). ``CreateVssBackupComponentsInternal``
and ``VssFreeSnapshotPropertiesInternal`` are what ``vssapi.dll`` exports behind the header's
inline ``CreateVssBackupComponents`` / ``VssFreeSnapshotProperties``.

This module has never run on Windows (docs/windows.md): the vtable slots and structure layouts
are from the headers; tests/platform/test_windows_vsscom.py runs its calls on Linux through
in-memory vtables transcribed independently from the same headers. Every COM call happens on
the thread that created the object (the run's thread), after ``CoInitializeEx(COINIT_MULTITHREADED)``.
"""

from __future__ import annotations

import sys

from .vssapi import BackupComponents, VssComError

if sys.platform == "win32":
    import ctypes
    import ntpath
    import uuid
    from typing import Any

    from .vssapi import VSS_OBJECT_SNAPSHOT_SET, Component, WriterMetadata, WriterStatus

    # fixed widths, as on Windows (HRESULT, LONG, BOOL, DWORD: 32 bits), so the module also loads on
    # Linux for tests/platform/test_windows_vsscom.py
    _HR = ctypes.c_int32
    _LONG = ctypes.c_int32
    _BOOL = ctypes.c_int32
    _DWORD = ctypes.c_uint32
    _WSTR = ctypes.c_wchar_p

    # IVssBackupComponents slots (vsbackup.h)
    _INITIALIZE_FOR_BACKUP = 5
    _SET_BACKUP_STATE = 6
    _GATHER_WRITER_METADATA = 9
    _GET_WRITER_METADATA_COUNT = 10
    _GET_WRITER_METADATA = 11
    _FREE_WRITER_METADATA = 12
    _ADD_COMPONENT = 13
    _PREPARE_FOR_BACKUP = 14
    _ABORT_BACKUP = 15
    _GATHER_WRITER_STATUS = 16
    _GET_WRITER_STATUS_COUNT = 17
    _FREE_WRITER_STATUS = 18
    _GET_WRITER_STATUS = 19
    _SET_BACKUP_SUCCEEDED = 20
    _BACKUP_COMPLETE = 27
    _SET_CONTEXT = 35
    _START_SNAPSHOT_SET = 36
    _ADD_TO_SNAPSHOT_SET = 37
    _DO_SNAPSHOT_SET = 38
    _DELETE_SNAPSHOTS = 39
    _GET_SNAPSHOT_PROPERTIES = 42
    _DISABLE_WRITER_CLASSES = 45
    # IVssAsync (vss.h)
    _ASYNC_CANCEL, _ASYNC_WAIT, _ASYNC_QUERY_STATUS = 3, 4, 5
    # IVssExamineWriterMetadata (vsbackup.h)
    _WM_GET_IDENTITY, _WM_GET_FILE_COUNTS, _WM_GET_COMPONENT = 3, 4, 7
    # IVssWMComponent (vsbackup.h)
    _C_GET_INFO, _C_FREE_INFO, _C_GET_FILE, _C_GET_DB_FILE, _C_GET_DB_LOG_FILE = 3, 4, 5, 6, 7
    # IVssWMFiledesc (vswriter.h)
    _FD_GET_PATH = 3
    _RELEASE = 2

    COINIT_MULTITHREADED = 0
    RPC_C_AUTHN_LEVEL_PKT_PRIVACY = 6
    RPC_C_IMP_LEVEL_IDENTIFY = 2
    EOAC_NONE = 0
    INFINITE = 0xFFFFFFFF

    class GUID(ctypes.Structure):
        _fields_ = [("Data1", _DWORD), ("Data2", ctypes.c_uint16), ("Data3", ctypes.c_uint16),
                    ("Data4", ctypes.c_ubyte * 8)]

    def _guid(text: str) -> GUID:
        return GUID.from_buffer_copy(uuid.UUID(text).bytes_le)

    def _text(g: GUID) -> str:
        return "{" + str(uuid.UUID(bytes_le=bytes(g))).upper() + "}"

    class VSS_COMPONENTINFO(ctypes.Structure):
        _fields_ = [
            ("type", ctypes.c_int), ("bstrLogicalPath", ctypes.c_wchar_p), ("bstrComponentName", ctypes.c_wchar_p),
            ("bstrCaption", ctypes.c_wchar_p), ("pbIcon", ctypes.c_void_p), ("cbIcon", ctypes.c_uint),
            ("bRestoreMetadata", ctypes.c_bool), ("bNotifyOnBackupComplete", ctypes.c_bool),
            ("bSelectable", ctypes.c_bool), ("bSelectableForRestore", ctypes.c_bool),
            ("dwComponentFlags", _DWORD), ("cFileCount", ctypes.c_uint), ("cDatabases", ctypes.c_uint),
            ("cLogFiles", ctypes.c_uint), ("cDependencies", ctypes.c_uint),
        ]

    class VSS_SNAPSHOT_PROP(ctypes.Structure):
        _fields_ = [
            ("m_SnapshotId", GUID), ("m_SnapshotSetId", GUID), ("m_lSnapshotsCount", _LONG),
            ("m_pwszSnapshotDeviceObject", ctypes.c_wchar_p), ("m_pwszOriginalVolumeName", ctypes.c_wchar_p),
            ("m_pwszOriginatingMachine", ctypes.c_wchar_p), ("m_pwszServiceMachine", ctypes.c_wchar_p),
            ("m_pwszExposedName", ctypes.c_wchar_p), ("m_pwszExposedPath", ctypes.c_wchar_p),
            ("m_ProviderId", GUID), ("m_lSnapshotAttributes", _LONG),
            ("m_tsCreationTimestamp", ctypes.c_longlong), ("m_eStatus", ctypes.c_int),
        ]

    _oleaut32 = ctypes.WinDLL("oleaut32")
    _oleaut32.SysFreeString.argtypes = [ctypes.c_void_p]
    _oleaut32.SysFreeString.restype = None

    def _bstr(ptr: ctypes.c_void_p) -> str:
        """The BSTR's text; the caller owned it, so it is freed."""
        if not ptr.value:
            return ""
        try:
            return ctypes.wstring_at(ptr.value)
        finally:
            _oleaut32.SysFreeString(ptr)

    class _Com:
        """One COM interface pointer; ``call`` invokes vtable slot ``index``."""

        def __init__(self, ptr: int, name: str) -> None:
            self.ptr = ptr
            self.name = name

        def slot(self, index: int, restype: Any, *argtypes: Any) -> Any:
            vtbl = ctypes.cast(ctypes.c_void_p(self.ptr), ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))).contents
            proto = ctypes.WINFUNCTYPE(restype, ctypes.c_void_p, *argtypes)
            return proto(vtbl[index])

        def call(self, method: str, index: int, argtypes: tuple[Any, ...], *args: Any) -> int:
            hr = int(self.slot(index, _HR, *argtypes)(self.ptr, *args)) & 0xFFFFFFFF
            if hr & 0x80000000:
                raise VssComError(f"{self.name}::{method}", hr)
            return hr

        def release(self) -> None:
            if self.ptr:
                self.slot(_RELEASE, ctypes.c_uint32)(self.ptr)
                self.ptr = 0

    class ComAsync:
        def __init__(self, ptr: int) -> None:
            self._com = _Com(ptr, "IVssAsync")

        def wait(self, milliseconds: int) -> None:
            self._com.call("Wait", _ASYNC_WAIT, (_DWORD,), min(milliseconds, INFINITE - 1))

        def status(self) -> int:
            hr = _HR(0)
            self._com.call("QueryStatus", _ASYNC_QUERY_STATUS, (ctypes.POINTER(_HR), ctypes.c_void_p),
                           ctypes.byref(hr), None)
            return int(hr.value) & 0xFFFFFFFF

        def cancel(self) -> None:
            self._com.call("Cancel", _ASYNC_CANCEL, ())

        def release(self) -> None:
            self._com.release()

    class ComBackupComponents:
        """``BackupComponents`` over a real ``IVssBackupComponents``."""

        def __init__(self) -> None:
            ole32 = ctypes.WinDLL("ole32")
            ole32.CoInitializeEx(None, COINIT_MULTITHREADED)  # S_FALSE / RPC_E_CHANGED_MODE: already set up
            # writers call back into this process; without this they fail with E_ACCESSDENIED
            # (RPC_E_TOO_LATE when the process already chose its security: fine)
            ole32.CoInitializeSecurity(None, -1, None, None, RPC_C_AUTHN_LEVEL_PKT_PRIVACY, RPC_C_IMP_LEVEL_IDENTIFY,
                                       None, EOAC_NONE, None)
            vssapi = ctypes.WinDLL("vssapi")
            create = vssapi.CreateVssBackupComponentsInternal
            create.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
            create.restype = _HR
            self._free_prop = vssapi.VssFreeSnapshotPropertiesInternal
            self._free_prop.argtypes = [ctypes.POINTER(VSS_SNAPSHOT_PROP)]
            self._free_prop.restype = None
            out = ctypes.c_void_p()
            hr = int(create(ctypes.byref(out))) & 0xFFFFFFFF
            if hr & 0x80000000 or not out.value:
                raise VssComError("CreateVssBackupComponents", hr or 0x80004005)
            self._com = _Com(out.value, "IVssBackupComponents")

        def _async(self, method: str, index: int) -> ComAsync:
            out = ctypes.c_void_p()
            self._com.call(method, index, (ctypes.POINTER(ctypes.c_void_p),), ctypes.byref(out))
            return ComAsync(out.value or 0)

        def initialize_for_backup(self) -> None:
            self._com.call("InitializeForBackup", _INITIALIZE_FOR_BACKUP, (ctypes.c_void_p,), None)

        def set_context(self, context: int) -> None:
            self._com.call("SetContext", _SET_CONTEXT, (_LONG,), context)

        def set_backup_state(self, select_components: bool, bootable_system_state: bool, backup_type: int) -> None:
            self._com.call("SetBackupState", _SET_BACKUP_STATE,
                           (ctypes.c_bool, ctypes.c_bool, ctypes.c_int, ctypes.c_bool),
                           select_components, bootable_system_state, backup_type, False)

        def disable_writer_classes(self, writer_ids: list[str]) -> None:
            ids = (GUID * len(writer_ids))(*(_guid(w) for w in writer_ids))
            self._com.call("DisableWriterClasses", _DISABLE_WRITER_CLASSES, (ctypes.POINTER(GUID), ctypes.c_uint),
                           ids, len(writer_ids))

        def gather_writer_metadata(self) -> ComAsync:
            return self._async("GatherWriterMetadata", _GATHER_WRITER_METADATA)

        def writer_metadata(self) -> list[WriterMetadata]:
            count = ctypes.c_uint(0)
            self._com.call("GetWriterMetadataCount", _GET_WRITER_METADATA_COUNT, (ctypes.POINTER(ctypes.c_uint),),
                           ctypes.byref(count))
            writers = []
            try:
                for i in range(count.value):
                    instance, out = GUID(), ctypes.c_void_p()
                    self._com.call("GetWriterMetadata", _GET_WRITER_METADATA,
                                   (ctypes.c_uint, ctypes.POINTER(GUID), ctypes.POINTER(ctypes.c_void_p)),
                                   i, ctypes.byref(instance), ctypes.byref(out))
                    examine = _Com(out.value or 0, "IVssExamineWriterMetadata")
                    try:
                        writers.append(_examine(examine))
                    finally:
                        examine.release()
            finally:
                self._com.call("FreeWriterMetadata", _FREE_WRITER_METADATA, ())
            return writers

        def add_component(self, instance_id: str, writer_id: str, component_type: int, logical_path: str,
                          name: str) -> None:
            self._com.call("AddComponent", _ADD_COMPONENT,
                           (GUID, GUID, ctypes.c_int, _WSTR, _WSTR),
                           _guid(instance_id), _guid(writer_id), component_type, logical_path or None, name)

        def start_snapshot_set(self) -> str:
            out = GUID()
            self._com.call("StartSnapshotSet", _START_SNAPSHOT_SET, (ctypes.POINTER(GUID),), ctypes.byref(out))
            return _text(out)

        def add_to_snapshot_set(self, volume: str) -> str:
            out = GUID()
            self._com.call("AddToSnapshotSet", _ADD_TO_SNAPSHOT_SET, (_WSTR, GUID, ctypes.POINTER(GUID)),
                           volume, GUID(), ctypes.byref(out))
            return _text(out)

        def prepare_for_backup(self) -> ComAsync:
            return self._async("PrepareForBackup", _PREPARE_FOR_BACKUP)

        def do_snapshot_set(self) -> ComAsync:
            return self._async("DoSnapshotSet", _DO_SNAPSHOT_SET)

        def gather_writer_status(self) -> ComAsync:
            return self._async("GatherWriterStatus", _GATHER_WRITER_STATUS)

        def writer_status(self) -> list[WriterStatus]:
            count = ctypes.c_uint(0)
            self._com.call("GetWriterStatusCount", _GET_WRITER_STATUS_COUNT, (ctypes.POINTER(ctypes.c_uint),),
                           ctypes.byref(count))
            found = []
            try:
                for i in range(count.value):
                    instance, writer, name = GUID(), GUID(), ctypes.c_void_p()
                    state, failure = ctypes.c_int(0), _HR(0)
                    self._com.call(
                        "GetWriterStatus", _GET_WRITER_STATUS,
                        (ctypes.c_uint, ctypes.POINTER(GUID), ctypes.POINTER(GUID), ctypes.POINTER(ctypes.c_void_p),
                         ctypes.POINTER(ctypes.c_int), ctypes.POINTER(_HR)),
                        i, ctypes.byref(instance), ctypes.byref(writer), ctypes.byref(name), ctypes.byref(state),
                        ctypes.byref(failure))
                    found.append(WriterStatus(_text(instance), _text(writer), _bstr(name), int(state.value),
                                              int(failure.value) & 0xFFFFFFFF))
            finally:
                self._com.call("FreeWriterStatus", _FREE_WRITER_STATUS, ())
            return found

        def snapshot_device(self, snapshot_id: str) -> str:
            prop = VSS_SNAPSHOT_PROP()
            self._com.call("GetSnapshotProperties", _GET_SNAPSHOT_PROPERTIES,
                           (GUID, ctypes.POINTER(VSS_SNAPSHOT_PROP)), _guid(snapshot_id), ctypes.byref(prop))
            try:
                return str(prop.m_pwszSnapshotDeviceObject or "")
            finally:
                self._free_prop(ctypes.byref(prop))

        def set_backup_succeeded(self, instance_id: str, writer_id: str, component_type: int, logical_path: str,
                                 name: str, succeeded: bool) -> None:
            self._com.call("SetBackupSucceeded", _SET_BACKUP_SUCCEEDED,
                           (GUID, GUID, ctypes.c_int, _WSTR, _WSTR, ctypes.c_bool),
                           _guid(instance_id), _guid(writer_id), component_type, logical_path or None, name, succeeded)

        def backup_complete(self) -> ComAsync:
            return self._async("BackupComplete", _BACKUP_COMPLETE)

        def abort_backup(self) -> None:
            self._com.call("AbortBackup", _ABORT_BACKUP, ())

        def delete_snapshot_set(self, set_id: str) -> None:
            deleted, failed = _LONG(0), GUID()
            self._com.call("DeleteSnapshots", _DELETE_SNAPSHOTS,
                           (GUID, ctypes.c_int, _BOOL, ctypes.POINTER(_LONG), ctypes.POINTER(GUID)),
                           _guid(set_id), VSS_OBJECT_SNAPSHOT_SET, True, ctypes.byref(deleted), ctypes.byref(failed))

        def release(self) -> None:
            self._com.release()

    def _examine(m: _Com) -> WriterMetadata:
        instance, writer, name = GUID(), GUID(), ctypes.c_void_p()
        usage, source = ctypes.c_int(0), ctypes.c_int(0)
        m.call("GetIdentity", _WM_GET_IDENTITY,
               (ctypes.POINTER(GUID), ctypes.POINTER(GUID), ctypes.POINTER(ctypes.c_void_p),
                ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)),
               ctypes.byref(instance), ctypes.byref(writer), ctypes.byref(name), ctypes.byref(usage),
               ctypes.byref(source))
        includes, excludes, count = ctypes.c_uint(0), ctypes.c_uint(0), ctypes.c_uint(0)
        m.call("GetFileCounts", _WM_GET_FILE_COUNTS, (ctypes.POINTER(ctypes.c_uint),) * 3,
               ctypes.byref(includes), ctypes.byref(excludes), ctypes.byref(count))
        components = []
        for i in range(count.value):
            out = ctypes.c_void_p()
            m.call("GetComponent", _WM_GET_COMPONENT, (ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)), i,
                   ctypes.byref(out))
            comp = _Com(out.value or 0, "IVssWMComponent")
            try:
                components.append(_component(comp))
            finally:
                comp.release()
        return WriterMetadata(_text(instance), _text(writer), _bstr(name), tuple(components))

    def _component(c: _Com) -> Component:
        info = ctypes.POINTER(VSS_COMPONENTINFO)()
        c.call("GetComponentInfo", _C_GET_INFO, (ctypes.POINTER(ctypes.POINTER(VSS_COMPONENTINFO)),),
               ctypes.byref(info))
        try:
            i = info.contents
            kinds = ((_C_GET_FILE, "GetFile", i.cFileCount), (_C_GET_DB_FILE, "GetDatabaseFile", i.cDatabases),
                     (_C_GET_DB_LOG_FILE, "GetDatabaseLogFile", i.cLogFiles))
            paths: list[str] = []
            for index, method, n in kinds:
                for k in range(n):
                    out = ctypes.c_void_p()
                    c.call(method, index, (ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)), k, ctypes.byref(out))
                    desc = _Com(out.value or 0, "IVssWMFiledesc")
                    try:
                        path = ctypes.c_void_p()
                        desc.call("GetPath", _FD_GET_PATH, (ctypes.POINTER(ctypes.c_void_p),), ctypes.byref(path))
                        paths.append(ntpath.expandvars(_bstr(path)))  # writers say %SystemRoot%\...
                    finally:
                        desc.release()
            return Component(int(i.type), i.bstrLogicalPath or "", i.bstrComponentName or "", bool(i.bSelectable),
                             bool(i.bNotifyOnBackupComplete), tuple(paths))
        finally:
            c.call("FreeComponentInfo", _C_FREE_INFO, (ctypes.POINTER(VSS_COMPONENTINFO),), info)


def backup_components() -> BackupComponents:
    """A new ``IVssBackupComponents`` (one per backup); ``VssComError`` off Windows."""
    if sys.platform == "win32":
        return ComBackupComponents()
    else:
        raise VssComError(f"CreateVssBackupComponents (this machine, {sys.platform}, is not Windows)", 0x80004001)


__all__ = ["backup_components"]
