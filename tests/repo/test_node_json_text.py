"""``Node.json_text`` must be exactly the generic encoding of ``Node.to_json``: tree IDs depend on it."""

from __future__ import annotations

import json
import random

import pytest

from e3backup.repo.node import Node
from e3backup.repo.tree import decode_tree, encode_tree


def generic(n: Node) -> str:
    return json.dumps(n.to_json(), separators=(",", ":"), ensure_ascii=False)


def random_node(rng: random.Random) -> Node:
    kind = rng.choice(["file", "dir", "symlink", "dev", "chardev", "fifo"])
    name = rng.choice([b"plain.txt", "naïve €".encode(), b"\xff\xfebad", b'quo"te\\back\nline', b"\x01ctl"])
    return Node(
        name=name + str(rng.random()).encode(),
        type=kind,
        mode=rng.choice([0, 0o644, 0o755 | (1 << 31), 0o777 | (1 << 27)]),
        mtime=rng.choice([0, 1_700_000_000_123_456_789, -5_000_000_001, 1_700_000_000_000_000_000]),
        atime=rng.randrange(0, 2_000_000_000) * 1_000_000_000 + rng.randrange(1_000_000_000),
        ctime=rng.randrange(0, 2_000_000_000) * 1_000_000_000,
        uid=rng.choice([0, 1000]),
        gid=rng.choice([0, 100]),
        user=rng.choice(["", "root", "jürgen"]),
        group=rng.choice(["", "wheel"]),
        inode=rng.choice([0, 123456789]),
        device_id=rng.choice([0, 2049]),
        size=rng.choice([0, 1, 10**12]),
        links=rng.choice([0, 1, 3]),
        linktarget=rng.choice([None, b"../target", b"\xff\xfe-not-utf8", b""]) if kind == "symlink" else None,
        xattrs=rng.choice([[], [("user.a", b"\x00\x01"), ("security.selinux", b"x" * 40)]]),
        device=rng.choice([0, 2049]) if kind in ("dev", "chardev") else 0,
        content=rng.choice([None, [], [rng.randbytes(32) for _ in range(rng.randrange(1, 4))]]),
        subtree=rng.randbytes(32) if kind == "dir" else None,
        error=rng.choice(["", 'read failed: "permission denied"']),
        extra=rng.choice([{}, {"generic_attributes": {"windows.creation_time": "AQID"}, "future": [1, 2.5, None]}]),
    )


@pytest.mark.parametrize("seed", range(40))
def test_json_text_equals_generic_encoding(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        n = random_node(rng)
        assert n.json_text() == generic(n)


def test_encoded_tree_round_trips_and_matches_generic_document() -> None:
    rng = random.Random(7)
    nodes = sorted((random_node(rng) for _ in range(30)), key=lambda n: n.name)
    data = encode_tree(nodes)
    doc = {"nodes": [n.to_json() for n in nodes]}
    assert data == (json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    assert decode_tree(data) == nodes
    assert encode_tree([]) == b'{"nodes":[]}\n'
