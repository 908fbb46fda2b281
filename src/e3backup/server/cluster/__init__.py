"""Running the server as one process (SQLite) or as replicas on one PostgreSQL.

    leader.py      who runs the scheduler: the only process (SQLite) or the holder of an advisory lock
    sole.py        SQLite: refuse a second server process on the same database file
    bus.py         wake-ups after commits (run progress, events, command answers), across replicas
                   through LISTEN/NOTIFY on PostgreSQL
"""
