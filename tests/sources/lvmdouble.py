"""A stand-in for the lvm2 tools that answers in exactly the shapes captured in
``lvm2_recordings/`` (lvm2 2.03.16), over an in-memory set of volume groups and volumes.
This kernel has no device-mapper, so real snapshots cannot be taken here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from e3backup.sources.snapshot.base import CommandResult

RECORDINGS = Path(__file__).parent / "lvm2_recordings"


def recording(name: str) -> str:
    return (RECORDINGS / name).read_text()


def render_report(kind: str, rows: list[dict[str, str]]) -> str:
    """lvm2's ``--reportformat json`` layout, byte for byte."""
    body = "".join(
        "                  {"
        + ", ".join(f'"{k}":"{v}"' for k, v in row.items())
        + "}"
        + (",\n" if i < len(rows) - 1 else "\n")
        for i, row in enumerate(rows)
    )
    head = f'  {{\n      "report": [\n          {{\n              "{kind}": [\n'
    return head + body + "              ]\n          }\n      ]\n  }\n"


def _vg_missing(vg: str) -> str:
    return f'  Volume group "{vg}" not found\n  Cannot process volume group {vg}\n'


@dataclass
class Lv:
    name: str
    vg: str
    size: int
    origin: str = ""
    attr: str = "-wi-ao----"


@dataclass
class Lvm2Double:
    extent_sizes: dict[str, int]
    lvs: list[Lv]
    lvcreate_fails: bool = False
    lvremove_fails: bool = False
    calls: list[list[str]] = field(default_factory=list)

    def run(self, argv: Sequence[str]) -> CommandResult:
        argv = list(argv)
        self.calls.append(argv)
        handler = getattr(self, "_" + argv[0])
        return handler(argv)  # type: ignore[no-any-return]

    def _target(self, arg: str) -> tuple[str, str | None]:
        parts = arg.removeprefix("/dev/").split("/")
        return parts[0], parts[1] if len(parts) > 1 else None

    def _lvs(self, argv: list[str]) -> CommandResult:
        fields = argv[argv.index("-o") + 1].split(",")
        rows = sorted(self.lvs, key=lambda lv: (lv.vg, lv.name))
        if argv[-1] != "--nosuffix":
            vg, name = self._target(argv[-1])
            if vg not in self.extent_sizes:
                return CommandResult(5, render_report("lv", []), _vg_missing(vg))
            rows = [lv for lv in rows if lv.vg == vg and (name is None or lv.name == name)]
            if name is not None and not rows:
                return CommandResult(
                    5, render_report("lv", []), f'  Failed to find logical volume "{vg}/{name}"\n'
                )
        values = {
            "lv_name": lambda lv: lv.name,
            "vg_name": lambda lv: lv.vg,
            "lv_path": lambda lv: f"/dev/{lv.vg}/{lv.name}",
            "lv_size": lambda lv: str(lv.size),
            "origin": lambda lv: lv.origin,
            "lv_attr": lambda lv: lv.attr,
        }
        return CommandResult(0, render_report("lv", [{f: values[f](lv) for f in fields} for lv in rows]), "")

    def _vgs(self, argv: list[str]) -> CommandResult:
        vg = argv[-1]
        if vg not in self.extent_sizes:
            return CommandResult(5, render_report("vg", []), _vg_missing(vg))
        return CommandResult(
            0, render_report("vg", [{"vg_name": vg, "vg_extent_size": str(self.extent_sizes[vg])}]), ""
        )

    def _lvcreate(self, argv: list[str]) -> CommandResult:
        if self.lvcreate_fails:
            return CommandResult(3, "", recording("lvcreate_nodm_stderr.txt"))
        assert argv[1] == "-s" and argv[2] == "-L" and argv[3].endswith("b") and argv[4] == "-n"
        size, name = int(argv[3][:-1]), argv[5]
        vg, origin = self._target(argv[6])
        assert size % self.extent_sizes[vg] == 0
        self.lvs.append(Lv(name, vg, size, origin or "", "swi-a-s---"))
        return CommandResult(0, f'  Logical volume "{name}" created.\n', "")

    def _lvremove(self, argv: list[str]) -> CommandResult:
        vg, name = self._target(argv[-1])
        found = [lv for lv in self.lvs if lv.vg == vg and lv.name == name]
        if self.lvremove_fails or not found:
            return CommandResult(5, "", f'  Failed to find logical volume "{vg}/{name}"\n')
        self.lvs.remove(found[0])
        return CommandResult(0, f'  Logical volume "{name}" successfully removed.\n', "")


__all__ = ["Lv", "Lvm2Double", "recording", "render_report"]
