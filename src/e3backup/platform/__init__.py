"""Thin OS adapters, the lowest layer: ``compat`` (POSIX calls with their Windows counterparts)
and ``windows`` (raw devices, IOCTL structures, VSS, inventory, shares, service).

Nothing here imports another e3backup layer except ``errors``; everything above is shared by
Linux and Windows and tested on Linux with real data (DESIGN.md, "platform adapters stay thin").
"""
