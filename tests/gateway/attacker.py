"""An intruder on an agent machine, trying to destroy its backups (run as its own process).

It has everything the agent host holds: the agent's config file (server URL, agent token), the
gateway token derived from it, and the repository cache. It tries the agent API, then every
repository the gateway might serve: delete, overwrite, fill with junk, replace the keys. It
prints what it got as JSON (status codes per attempt kind); the test then checks the damage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import httpx
import yaml


def gateway_token(agent_token: str) -> str:
    """The derivation is no secret (docs/gateway.md): the intruder computes it too."""
    mac = hmac.new(agent_token.encode(), b"e3backup repository gateway v1", hashlib.sha256).digest()
    return "e3g_" + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def main(config_path: str, cache_dir: str) -> None:
    config = yaml.safe_load(Path(config_path).read_text())
    server, agent_token = config["server_url"], config["agent_token"]
    seen: Counter[str] = Counter()
    api = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {agent_token}"}, timeout=30)
    # the control plane: anything that hands out storage credentials or deletes?
    seen[f"next_run {api.post('/api/agent/next_run').status_code}"] += 1
    for path in ("/api/jobs", "/api/agents", "/api/runs"):
        seen[f"user api {api.get(path).status_code}"] += 1
    for token in (agent_token, gateway_token(agent_token)):
        gw = httpx.Client(base_url=f"{server}/gateway", auth=("agent", token), timeout=30)
        for job in range(1, 25):
            repo = f"/job-{job}"
            if gw.head(f"{repo}/config").status_code != 200:
                continue
            seen["repository found"] += 1
            for kind in ("data", "index", "snapshots", "keys", "locks"):
                r = gw.get(f"{repo}/{kind}/", headers={"Accept": "application/vnd.x.restic.rest.v2"})
                for entry in r.json() if r.status_code == 200 else []:
                    path = f"{repo}/{kind}/{entry['name']}"
                    seen[f"delete {kind} {gw.delete(path).status_code}"] += 1
                    seen[f"overwrite {kind} {gw.post(path, content=b'encrypted by ransomware').status_code}"] += 1
                junk = os.urandom(4096)
                r = gw.post(f"{repo}/{kind}/{hashlib.sha256(junk).hexdigest()}", content=junk)
                seen[f"junk {kind} {r.status_code}"] += 1
            seen[f"delete config {gw.delete(f'{repo}/config').status_code}"] += 1
            seen[f"overwrite config {gw.post(f'{repo}/config', content=b'gone').status_code}"] += 1
            seen[f"recreate {gw.post(f'{repo}/?create=true').status_code}"] += 1
    shutil.rmtree(cache_dir, ignore_errors=True)  # the local cache: the agent's own copy, gone
    print(json.dumps(dict(seen)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
