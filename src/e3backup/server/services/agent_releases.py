"""Agent self-update on the server: signed releases, the version each tenant wants, the offer
made to an agent with its poll, and what the agent said came of it.

The server does not sign: the MSP signs a release offline (``e3backup release sign``) with the
key whose public half its agents were enrolled with, so a server that is broken into cannot
make agents run a file of its own.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from e3backup.api.agent import AgentUpdateOffer, NextRunRequest
from e3backup.server.db.models import AgentRelease, Tenant
from e3backup.server.errors import FieldError

RELEASE_DIR = "agent-releases"


def release_file(data_dir: Path, release: AgentRelease) -> Path:
    return data_dir / RELEASE_DIR / release.sha256


def add_release(session: Session, data_dir: Path, version: str, build_platform: str, file: Path,
                signature_b64: str, now: datetime) -> AgentRelease:
    """Store a release (the file is copied under the data dir by its digest)."""
    try:
        if len(base64.b64decode(signature_b64, validate=True)) != 64:
            raise ValueError
    except ValueError:
        raise FieldError("signature", "not a base64 Ed25519 signature (64 bytes)") from None
    if session.scalar(select(AgentRelease).where(AgentRelease.version == version,
                                                 AgentRelease.build_platform == build_platform)):
        raise FieldError("version", f"release {version} for {build_platform} exists already")
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    dest = data_dir / RELEASE_DIR / sha
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, dest)
    row = AgentRelease(version=version, build_platform=build_platform, sha256=sha, size=dest.stat().st_size,
                       signature=signature_b64, created_at=now)
    session.add(row)
    session.flush()
    return row


def set_wanted_version(tenant: Tenant, version: str | None) -> None:
    tenant.agent_version_wanted = version or None


def releases(session: Session) -> list[AgentRelease]:
    return list(session.scalars(select(AgentRelease).order_by(AgentRelease.created_at.desc(), AgentRelease.id.desc())))


def choose_version(session: Session, tenant: Tenant, version: str | None) -> None:
    """The dashboard's and API's choice: only a version with a stored release (an offer needs one)."""
    version = (version or "").strip() or None
    if version is not None and session.scalar(select(AgentRelease.id).where(AgentRelease.version == version)) is None:
        raise FieldError("version", f"no release {version} is stored (e3backup server add-agent-release)")
    set_wanted_version(tenant, version)


def offer(session: Session, tenant_id: int, req: NextRunRequest | None) -> AgentUpdateOffer | None:
    """A release to switch to, when the agent's tenant wants a version this agent does not run,
    one is stored for its platform, and the agent can update itself."""
    if req is None or not req.self_update or not req.build_platform or not req.agent_version:
        return None
    tenant = session.get(Tenant, tenant_id)
    wanted = tenant.agent_version_wanted if tenant is not None else None
    if not wanted or wanted == req.agent_version:
        return None
    release = session.scalar(select(AgentRelease).where(AgentRelease.version == wanted,
                                                        AgentRelease.build_platform == req.build_platform))
    if release is None:
        return None
    return AgentUpdateOffer(version=release.version, build_platform=release.build_platform, sha256=release.sha256,
                            size=release.size, signature=release.signature,
                            url=f"/api/agent/releases/{release.id}")


__all__ = ["RELEASE_DIR", "add_release", "choose_version", "offer", "release_file", "releases", "set_wanted_version"]
