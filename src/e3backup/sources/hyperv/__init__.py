"""Hyper-V as a source: the `HyperVHost` protocol, the simulated host, the WMI host, frozen disks.

host.py   HyperVHost and its types (VMs, disks, checkpoints, reference points), the RCT error codes
sim.py    SimHost: a folder of real VHDX files, guest writes recorded as RCT ranges (``sim:DIR``)
wmi.py    WmiHost: a real host through PowerShell's CIM cmdlets (root\\virtualization\\v2)
disk.py   a frozen disk as the image engine's Device and snapshot provider
open.py   open_host("sim:DIR" | "local")
"""
