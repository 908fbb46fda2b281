"""The repository gateway: restic's REST backend protocol (v2) in front of the real storage.

Agents of gateway-mode jobs write and read their repositories through it with a token that may
only add objects (and delete their own locks), and never see the storage credentials, which the
gateway holds. Forget, prune and check of those repositories run in the maintenance worker
(``worker``), which reaches the storage directly. See docs/gateway.md.

    protocol   paths, ranges and media types of the REST protocol v2
    access     tokens to grants; the append-only rules
    stores     the job's destination opened with its credentials (a connection pool)
    objects    reading objects in pieces (no whole pack in memory)
    app        the ASGI app mounted at /gateway/ in the server
    worker     forget/prune/check of gateway-mode repositories, scheduled by the server
"""
