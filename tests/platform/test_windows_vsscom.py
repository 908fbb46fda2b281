"""The ctypes COM adapter (``platform/windows/vsscom.py``) calling through real vtables on Linux.

The module's Windows branch is loaded with ``ctypes.WINFUNCTYPE`` as ``CFUNCTYPE`` and ``WinDLL``
replaced by stand-ins for ``vssapi.dll``, ``ole32.dll`` and ``oleaut32.dll``. The COM objects it
calls are built here in memory: a pointer to a vtable of C callbacks whose slots and parameter
types are transcribed independently from the declaration order of ``vsbackup.h`` / ``vswriter.h`` /
``vss.h`` (IUnknown's three, then each method in turn; mingw-w64's ``vsbackup.h`` lists the same
order) and whose structures (``VSS_COMPONENTINFO``, ``VSS_SNAPSHOT_PROP``, ``GUID``) are transcribed
from Microsoft's structure pages. Behind the vtables answers ``FakeVss`` (tests/platform/vss_double.py).
A slot or a parameter type the adapter gets wrong reaches the wrong callback or garbled values and
fails these tests. What Linux cannot check: the Windows calling convention (x64 has one; 32-bit
stdcall differs) and 2-byte ``wchar_t`` (ctypes uses the platform's), so this is no Windows run.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import e3backup.platform.windows as windows_pkg
from e3backup.events import Event, EventCode
from e3backup.platform.windows.vssapi import (
    VSS_BT_FULL,
    VSS_E_WRITERERROR_TIMEOUT,
    VSS_WS_FAILED_AT_FREEZE,
    Component,
    VssComError,
    WriterMetadata,
)
from e3backup.sources.snapshot.appvss import AppConsistentVss, AppVssSnapshotProvider, VssSettings
from tests.platform.vss_double import REGISTRY_ID, SQL_ID, FakeAsync, FakeVss

HRESULT = ctypes.c_int32
E_FAIL = 0x80004005
PP = ctypes.POINTER(ctypes.c_void_p)


class GUID(ctypes.Structure):  # guiddef.h
    _fields_ = [("Data1", ctypes.c_uint32), ("Data2", ctypes.c_uint16), ("Data3", ctypes.c_uint16),
                ("Data4", ctypes.c_ubyte * 8)]


class COMPONENTINFO(ctypes.Structure):  # "VSS_COMPONENTINFO structure"
    _fields_ = [("type", ctypes.c_int), ("bstrLogicalPath", ctypes.c_void_p), ("bstrComponentName", ctypes.c_void_p),
                ("bstrCaption", ctypes.c_void_p), ("pbIcon", ctypes.c_void_p), ("cbIcon", ctypes.c_uint),
                ("bRestoreMetadata", ctypes.c_bool), ("bNotifyOnBackupComplete", ctypes.c_bool),
                ("bSelectable", ctypes.c_bool), ("bSelectableForRestore", ctypes.c_bool),
                ("dwComponentFlags", ctypes.c_uint32), ("cFileCount", ctypes.c_uint), ("cDatabases", ctypes.c_uint),
                ("cLogFiles", ctypes.c_uint), ("cDependencies", ctypes.c_uint)]


class SNAPSHOT_PROP(ctypes.Structure):
    _fields_ = [("m_SnapshotId", GUID), ("m_SnapshotSetId", GUID), ("m_lSnapshotsCount", ctypes.c_int32),
                ("m_pwszSnapshotDeviceObject", ctypes.c_void_p), ("m_pwszOriginalVolumeName", ctypes.c_void_p),
                ("m_pwszOriginatingMachine", ctypes.c_void_p), ("m_pwszServiceMachine", ctypes.c_void_p),
                ("m_pwszExposedName", ctypes.c_void_p), ("m_pwszExposedPath", ctypes.c_void_p),
                ("m_ProviderId", GUID), ("m_lSnapshotAttributes", ctypes.c_int32),
                ("m_tsCreationTimestamp", ctypes.c_int64), ("m_eStatus", ctypes.c_int)]


def _g(text: str) -> GUID:
    return GUID.from_buffer_copy(uuid.UUID(text).bytes_le)


def _t(g: GUID) -> str:
    return "{" + str(uuid.UUID(bytes_le=bytes(g))).upper() + "}"


def _signed(hr: int) -> int:
    return hr - (1 << 32) if hr & 0x80000000 else hr


class Machine:
    """What the adapter talks to: COM objects, BSTRs and the DLL exports, with their bookkeeping."""

    def __init__(self, vss: FakeVss) -> None:
        self.vss = vss
        self.keep: list[object] = []
        self.errors: list[str] = []
        self.objects: dict[int, str] = {}  # address -> interface
        self.released: list[int] = []
        self.bstrs: set[int] = set()
        self.freed: list[int] = []
        self.props_freed = 0
        self.strings: list[object] = []

    def bstr(self, text: str, caller_frees: bool = True) -> int:
        """A string handed out; ``caller_frees``: an out-parameter BSTR the adapter must
        SysFreeString (names, paths), else the callee's (component info, snapshot properties)."""
        buf = ctypes.create_unicode_buffer(text)
        self.strings.append(buf)
        if caller_frees:
            self.bstrs.add(ctypes.addressof(buf))
        return ctypes.addressof(buf)

    def com(self, interface: str, slots: int, methods: dict[int, tuple[tuple[Any, ...], Callable[..., int]]]) -> int:
        """A COM object: its first field points to a vtable of ``slots`` callbacks."""
        vtable = (ctypes.c_void_p * slots)()
        obj = ctypes.c_void_p(ctypes.addressof(vtable))
        address = ctypes.addressof(obj)

        def release(_this: int) -> int:
            self.released.append(address)
            return 0

        methods = {2: ((), release), **methods}
        for i in range(slots):
            argtypes, fn = methods.get(i, ((), self._unexpected(interface, i)))
            restype = ctypes.c_uint32 if i == 2 else HRESULT
            cb = ctypes.CFUNCTYPE(restype, ctypes.c_void_p, *argtypes)(self._guard(interface, i, fn))
            self.keep.append(cb)
            vtable[i] = ctypes.cast(cb, ctypes.c_void_p).value
        self.keep += [vtable, obj]
        self.objects[address] = interface
        return address

    def _unexpected(self, interface: str, slot: int) -> Callable[..., int]:
        def call(*_args: object) -> int:
            self.errors.append(f"{interface} slot {slot} called")
            return _signed(E_FAIL)
        return call

    def _guard(self, interface: str, slot: int, fn: Callable[..., int]) -> Callable[..., int]:
        def call(this: int, *args: object) -> int:
            try:
                return fn(this, *args)
            except VssComError as e:
                return _signed(e.hresult)
            except Exception as e:
                self.errors.append(f"{interface} slot {slot}: {type(e).__name__}: {e}")
                return _signed(E_FAIL)
        return call

    # -- the objects ----------------------------------------------------------------------

    def async_op(self, op: FakeAsync) -> int:
        def query(_this: int, hr: Any, reserved: Any) -> int:
            assert not reserved
            hr[0] = _signed(op.status())
            return 0
        return self.com("IVssAsync", 6, {
            3: ((), lambda _this: (op.cancel(), 0)[1]),
            4: ((ctypes.c_uint32,), lambda _this, ms: (op.wait(ms), 0)[1]),
            5: ((ctypes.POINTER(HRESULT), ctypes.c_void_p), query),
        })

    def filedesc(self, path: str) -> int:
        def get_path(_this: int, out: Any) -> int:
            out[0] = self.bstr(path)
            return 0
        return self.com("IVssWMFiledesc", 8, {3: ((PP,), get_path)})

    def component(self, c: Component) -> int:
        info = COMPONENTINFO(type=c.type,
                             bstrLogicalPath=self.bstr(c.logical_path, False) if c.logical_path else None,
                             bstrComponentName=self.bstr(c.name, False), bSelectable=c.selectable,
                             bNotifyOnBackupComplete=c.notify_on_backup_complete)
        databases = c.type == 1
        info.cDatabases, info.cFileCount = (len(c.paths), 0) if databases else (0, len(c.paths))
        self.keep.append(info)
        freed: list[int] = []

        def get_info(_this: int, out: Any) -> int:
            out[0] = ctypes.addressof(info)
            return 0

        def free_info(_this: int, p: int) -> int:
            assert p == ctypes.addressof(info)
            freed.append(p)
            return 0

        def nth(kind: bool) -> Callable[..., int]:
            def get(_this: int, i: int, out: Any) -> int:
                assert kind, "asked for files of a kind the component has none of"
                out[0] = self.filedesc(c.paths[i])
                return 0
            return get

        return self.com("IVssWMComponent", 9, {
            3: ((PP,), get_info), 4: ((ctypes.c_void_p,), free_info),
            5: ((ctypes.c_uint, PP), nth(not databases)), 6: ((ctypes.c_uint, PP), nth(databases)),
            7: ((ctypes.c_uint, PP), nth(False)),
        })

    def examine(self, w: WriterMetadata) -> int:
        def identity(_this: int, inst: Any, writer: Any, name: Any, usage: Any, source: Any) -> int:
            inst[0], writer[0], name[0] = _g(w.instance_id), _g(w.writer_id), self.bstr(w.name)
            usage[0], source[0] = 0, 0
            return 0

        def counts(_this: int, inc: Any, exc: Any, comps: Any) -> int:
            inc[0], exc[0], comps[0] = 0, 0, len(w.components)
            return 0

        def component(_this: int, i: int, out: Any) -> int:
            out[0] = self.component(w.components[i])
            return 0

        u = ctypes.POINTER(ctypes.c_uint)
        return self.com("IVssExamineWriterMetadata", 14, {
            3: ((ctypes.POINTER(GUID), ctypes.POINTER(GUID), PP, ctypes.POINTER(ctypes.c_int),
                 ctypes.POINTER(ctypes.c_int)), identity),
            4: ((u, u, u), counts),
            7: ((ctypes.c_uint, PP), component),
        })

    def backup_components(self) -> int:
        bc = self.vss.create()
        writers: list[WriterMetadata] = []
        statuses: list[Any] = []

        def ok(fn: Callable[..., object]) -> Callable[..., int]:
            def call(_this: int, *args: object) -> int:
                fn(*args)
                return 0
            return call

        def asyncs(fn: Callable[[], FakeAsync]) -> Callable[..., int]:
            def call(_this: int, out: Any) -> int:
                out[0] = self.async_op(fn())
                return 0
            return call

        def metadata_count(_this: int, out: Any) -> int:
            writers[:] = bc.writer_metadata()
            out[0] = len(writers)
            return 0

        def metadata(_this: int, i: int, inst: Any, out: Any) -> int:
            inst[0] = _g(writers[i].instance_id)
            out[0] = self.examine(writers[i])
            return 0

        def status_count(_this: int, out: Any) -> int:
            statuses[:] = bc.writer_status()
            out[0] = len(statuses)
            return 0

        def status(_this: int, i: int, inst: Any, writer: Any, name: Any, state: Any, failure: Any) -> int:
            s = statuses[i]
            inst[0], writer[0], name[0] = _g(s.instance_id), _g(s.writer_id), self.bstr(s.name)
            state[0], failure[0] = s.state, _signed(s.failure)
            return 0

        def start(_this: int, out: Any) -> int:
            out[0] = _g(bc.start_snapshot_set())
            return 0

        def add_volume(_this: int, volume: str, provider: GUID, out: Any) -> int:
            assert bytes(provider) == bytes(16)  # GUID_NULL: VSS picks the provider
            out[0] = _g(bc.add_to_snapshot_set(volume))
            return 0

        def delete(_this: int, set_id: GUID, kind: int, force: int, deleted: Any, failed: Any) -> int:
            assert (kind, force) == (2, 1)  # VSS_OBJECT_SNAPSHOT_SET, bForceDelete=TRUE
            bc.delete_snapshot_set(_t(set_id))
            deleted[0] = 1
            return 0

        def properties(_this: int, sid: GUID, prop: Any) -> int:
            p = prop[0]
            p.m_SnapshotId = sid
            p.m_pwszSnapshotDeviceObject = self.bstr(bc.snapshot_device(_t(sid)), False)
            p.m_pwszOriginalVolumeName = self.bstr("\\\\?\\Volume{00000000-0000-0000-0000-000000000001}\\", False)
            return 0

        def disable(_this: int, ids: Any, n: int) -> int:
            bc.disable_writer_classes([_t(ids[i]) for i in range(n)])
            return 0

        def released(_this: int) -> int:
            bc.release()
            return 0

        s = ctypes.c_wchar_p
        address = self.com("IVssBackupComponents", 51, {
            5: ((ctypes.c_void_p,), ok(lambda xml: (assert_null(xml), bc.initialize_for_backup()))),
            6: ((ctypes.c_bool, ctypes.c_bool, ctypes.c_int, ctypes.c_bool),
                ok(lambda sel, boot, kind, partial: (assert_false(partial), bc.set_backup_state(sel, boot, kind)))),
            9: ((PP,), asyncs(bc.gather_writer_metadata)),
            10: ((ctypes.POINTER(ctypes.c_uint),), metadata_count),
            11: ((ctypes.c_uint, ctypes.POINTER(GUID), PP), metadata),
            12: ((), ok(lambda: None)),
            13: ((GUID, GUID, ctypes.c_int, s, s),
                 ok(lambda i, w, t, lp, n: bc.add_component(_t(i), _t(w), t, lp or "", n))),
            14: ((PP,), asyncs(bc.prepare_for_backup)),
            15: ((), ok(bc.abort_backup)),
            16: ((PP,), asyncs(bc.gather_writer_status)),
            17: ((ctypes.POINTER(ctypes.c_uint),), status_count),
            18: ((), ok(lambda: None)),
            19: ((ctypes.c_uint, ctypes.POINTER(GUID), ctypes.POINTER(GUID), PP, ctypes.POINTER(ctypes.c_int),
                  ctypes.POINTER(HRESULT)), status),
            20: ((GUID, GUID, ctypes.c_int, s, s, ctypes.c_bool),
                 ok(lambda i, w, t, lp, n, good: bc.set_backup_succeeded(_t(i), _t(w), t, lp or "", n, good))),
            27: ((PP,), asyncs(bc.backup_complete)),
            35: ((ctypes.c_int32,), ok(bc.set_context)),
            36: ((ctypes.POINTER(GUID),), start),
            37: ((s, GUID, ctypes.POINTER(GUID)), add_volume),
            38: ((PP,), asyncs(bc.do_snapshot_set)),
            39: ((GUID, ctypes.c_int, ctypes.c_int32, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(GUID)), delete),
            42: ((GUID, ctypes.POINTER(SNAPSHOT_PROP)), properties),
            45: ((ctypes.POINTER(GUID), ctypes.c_uint), disable),
        })
        # releasing the object is what frees a VSS_CTX_BACKUP set: tell the double
        vtable = ctypes.cast(ctypes.c_void_p(address), ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))).contents
        inner = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)(vtable[2])

        def release_both(this: int) -> int:
            released(this)
            return int(inner(this))

        cb = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)(release_both)
        self.keep += [inner, cb]
        vtable[2] = ctypes.cast(cb, ctypes.c_void_p).value
        return address


def assert_null(value: object) -> None:
    assert value is None, "InitializeForBackup(NULL): an empty Backup Components Document"


def assert_false(value: object) -> None:
    assert value is False, "bPartialFileSupport: no partial files"


class Export:
    """A DLL export the adapter sets ``argtypes``/``restype`` on and calls."""

    def __init__(self, fn: Callable[..., int | None]) -> None:
        self.fn = fn
        self.argtypes: object = None
        self.restype: object = None

    def __call__(self, *args: Any) -> int | None:
        return self.fn(*args)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Machine, FakeVss]]:
    vss = FakeVss()
    vss.writers = [
        WriterMetadata(w.instance_id, w.writer_id, w.name,
                       tuple(Component(c.type, c.logical_path, c.name, c.selectable, c.notify_on_backup_complete,
                                       tuple(p.replace("C:\\Windows", "%SystemRoot%") for p in c.paths))
                             for c in w.components))
        for w in vss.writers
    ]
    machine = Machine(vss)

    def create(out: Any) -> int:
        out._obj.value = machine.backup_components()
        return 0

    def free_props(prop: Any) -> None:
        machine.props_freed += 1

    def free_string(ptr: Any) -> None:
        machine.freed.append(int(ptr.value if isinstance(ptr, ctypes.c_void_p) else ptr))

    dlls: dict[str, dict[str, Export]] = {
        "vssapi": {"CreateVssBackupComponentsInternal": Export(create),
                   "VssFreeSnapshotPropertiesInternal": Export(free_props)},
        "ole32": {"CoInitializeEx": Export(lambda *_a: 0), "CoInitializeSecurity": Export(lambda *_a: 0)},
        "oleaut32": {"SysFreeString": Export(free_string)},
    }

    class WinDLL:
        def __init__(self, name: str) -> None:
            self.__dict__.update(dlls[name])

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE, raising=False)
    monkeypatch.setattr(ctypes, "WinDLL", WinDLL, raising=False)
    monkeypatch.setenv("SystemRoot", "C:\\Windows")
    path = Path(windows_pkg.__file__).parent / "vsscom.py"
    spec = importlib.util.spec_from_file_location("e3backup.platform.windows._vsscom_sim", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module, machine, vss
    assert machine.errors == []


def _snapshot(module: ModuleType, vss: FakeVss, **settings: Any) -> tuple[str, tuple[str, ...], list[Event]]:
    events: list[Event] = []
    app = AppConsistentVss(module.backup_components, VssSettings(consistency="application", **settings),
                           events.append, clock=vss.clock, pause=lambda _s: None)
    with AppVssSnapshotProvider(app, None, None, events.append).snapshot("C:") as snap:
        return snap.device_path, snap.warnings, events


def test_the_adapter_drives_the_sequence_through_the_vtables(sim: tuple[ModuleType, Machine, FakeVss]) -> None:
    module, machine, vss = sim
    device, warnings, events = _snapshot(module, vss, backup_type="full")
    assert device.startswith("\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy") and warnings == ()
    [bc] = vss.objects
    assert ("SetBackupState", True, False, VSS_BT_FULL) in bc.calls
    assert ("SetContext", 0) in bc.calls and ("AddToSnapshotSet", "C:\\") in bc.calls
    added = [(c[2], c[5]) for c in bc.calls if c[0] == "AddComponent"]
    # the registry's %SystemRoot% path was expanded, so it counts as on C:
    assert added == [(SQL_ID, "master"), (SQL_ID, "SalesDb"), (REGISTRY_ID, "Registry")]
    assert next(c for c in bc.calls if c[0] == "AddComponent" and c[5] == "Registry")[4] == ""  # NULL path
    created = next(e for e in events if e.code == EventCode.VSS_SNAPSHOT_CREATED)
    assert created.details["writers"] == ["Registry Writer", "SqlServerWriter"]
    assert vss.live == {} and bc.released
    # every COM object handed out was released once; every BSTR freed; the properties freed
    assert sorted(machine.released) == sorted(machine.objects)
    assert machine.bstrs and sorted(machine.freed) == sorted(machine.bstrs)  # each once, none of the callee's
    assert machine.props_freed == 1


def test_writer_status_is_read_through_the_vtable(sim: tuple[ModuleType, Machine, FakeVss]) -> None:
    module, _machine, vss = sim
    vss.states[("SqlServerWriter", "DoSnapshotSet")] = (VSS_WS_FAILED_AT_FREEZE, VSS_E_WRITERERROR_TIMEOUT)
    _device, warnings, events = _snapshot(module, vss)
    assert len(warnings) == 1
    assert "'SqlServerWriter' is in VSS_WS_FAILED_AT_FREEZE" in warnings[0] and "0x800423F2" in warnings[0]
    failed = next(e for e in events if e.code == EventCode.VSS_WRITER_FAILED)
    assert failed.details["writer_id"] == SQL_ID


def test_a_failing_call_becomes_a_named_error_and_everything_is_released(
    sim: tuple[ModuleType, Machine, FakeVss]
) -> None:
    from e3backup.platform.windows.vssapi import VSS_E_INSUFFICIENT_STORAGE
    from e3backup.sources.errors import SnapshotError

    module, machine, vss = sim
    vss.fail["DoSnapshotSet"] = VSS_E_INSUFFICIENT_STORAGE
    with pytest.raises(SnapshotError, match=r"IVssBackupComponents::DoSnapshotSet failed: VSS_E_INSUFFICIENT_STORAGE"):
        _snapshot(module, vss)
    assert sorted(machine.released) == sorted(machine.objects)
    assert "AbortBackup" in vss.objects[0].names()


def test_excluded_writer_ids_cross_the_vtable(sim: tuple[ModuleType, Machine, FakeVss]) -> None:
    module, _machine, vss = sim
    _snapshot(module, vss, exclude_writers=(SQL_ID, REGISTRY_ID))
    disabled = next(c for c in vss.objects[0].calls if c[0] == "DisableWriterClasses")
    assert disabled[1] == tuple(sorted([SQL_ID, REGISTRY_ID]))


def test_off_windows_the_factory_says_so() -> None:
    from e3backup.platform.windows.vsscom import backup_components

    with pytest.raises(VssComError, match="not Windows"):
        backup_components()

