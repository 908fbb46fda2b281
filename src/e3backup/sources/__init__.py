"""The source side of image backups: what to read of a disk, and reading it robustly.

device.py     open a block device or image file; preadv into caller buffers
layout/       GPT/MBR parsing, file-system probing, ext2/3/4 and NTFS allocation maps
plan.py       ReadPlan: metadata + used extents; everything else known zero
reader.py     DeviceReader: retries, best-effort zero-fill or strict failure
changemap.py  --changed-extents files and per-chunk read/reuse/zero decisions
snapshot/     LVM snapshots, the live device, auto selection
"""

# Modules are imported by what they hold (``e3backup.sources.plan`` ...): a restore that needs
# only ``extents`` does not pay for the layout parsers and snapshot providers.
