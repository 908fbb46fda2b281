"""The bare-metal recovery console (``e3backup recovery``): restores an image snapshot onto the
rescue machine's disk through a recovery session (``docs/recovery.md``).

client.py    the session's calls (``/api/recovery/...``): the agent's client on a session token
access.py    what the session hands over (restore point, repository access) and ``RepositoryAccess``
disks.py     the machine's disks: model, size, partitions, in use
fit.py       whether a disk can take the image, and why not
gpt.py       the backup GPT moved to the end of a larger disk
keeper.py    the session keeper: refresh every 5 minutes, cancel polls, the outbox delivered
console.py   the steps (sign in, pick, restore, status), resume after repository outages
web.py       the local web UI (127.0.0.1) over the same steps

Nothing here imports the server: the console talks to it over HTTP only.
"""
