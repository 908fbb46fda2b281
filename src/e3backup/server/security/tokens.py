"""Bearer tokens (agent, enrollment, recovery session, user session, repository gateway, the
server's own read-only gateway reader).

Tokens are 256 random bits with a short prefix naming their kind. The server stores only their
SHA-256: a random token needs no slow hash, and lookups stay a single indexed equality.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

AGENT = "e3a_"
ENROLLMENT = "e3e_"
RECOVERY = "e3r_"
SESSION = "e3s_"
GATEWAY = "e3g_"
READER = "e3d_"  # the server reading a gateway-mode repository for a dashboard user (read-only)


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def gateway_token(agent_token: str) -> str:
    """The agent's repository-gateway token, derived from its agent token (HMAC-SHA256): the
    server can hand it out on every call that shows the agent token and store only its hash,
    and it opens nothing but the gateway (not the agent API, which hands out runs and secrets)."""
    mac = hmac.new(agent_token.encode(), b"e3backup repository gateway v1", hashlib.sha256).digest()
    return GATEWAY + base64.urlsafe_b64encode(mac).decode().rstrip("=")


__all__ = ["AGENT", "ENROLLMENT", "GATEWAY", "READER", "RECOVERY", "SESSION", "gateway_token", "hash_token",
           "new_token"]
