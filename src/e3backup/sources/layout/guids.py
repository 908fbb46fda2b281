"""Names for the partition types we meet most (GPT type GUIDs and MBR type bytes)."""

from __future__ import annotations

GPT_TYPES: dict[str, str] = {
    "00000000-0000-0000-0000-000000000000": "unused",
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "efi-system",
    "21686148-6449-6E6F-744E-656564454649": "bios-boot",
    "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "ms-reserved",
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "ms-basic-data",
    "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "ms-recovery",
    "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "ms-ldm-metadata",
    "AF9B60A0-1431-4F62-BC68-3311714A69AD": "ms-ldm-data",
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "linux-fs",
    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "linux-root-x86-64",
    "933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "linux-home",
    "BC13C2FF-59E6-4262-A352-B275FD6F7172": "linux-xbootldr",
    "E6D6D379-F507-44C2-A23C-238F2A3DF928": "linux-lvm",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "linux-swap",
    "A19D880F-05FC-4D3B-A006-743F0F84911E": "linux-raid",
    "CA7D7CCB-63ED-4C53-861C-1742536059CC": "linux-luks",
}

MBR_TYPES: dict[int, str] = {
    0x00: "unused",
    0x01: "fat12",
    0x04: "fat16",
    0x05: "extended",
    0x06: "fat16",
    0x07: "ntfs-exfat",
    0x0B: "fat32",
    0x0C: "fat32-lba",
    0x0E: "fat16-lba",
    0x0F: "extended-lba",
    0x27: "windows-recovery",
    0x82: "linux-swap",
    0x83: "linux-fs",
    0x85: "linux-extended",
    0x8E: "linux-lvm",
    0xEE: "gpt-protective",
    0xEF: "efi-system",
    0xFD: "linux-raid",
}

EXTENDED_MBR_TYPES = frozenset({0x05, 0x0F, 0x85})


def gpt_type_name(guid: str) -> str:
    return GPT_TYPES.get(guid.upper(), "unknown")


def mbr_type_name(kind: int) -> str:
    return MBR_TYPES.get(kind, "unknown")


__all__ = ["EXTENDED_MBR_TYPES", "GPT_TYPES", "MBR_TYPES", "gpt_type_name", "mbr_type_name"]
