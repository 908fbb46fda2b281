"""One router per resource; ``ROUTERS`` is what the app mounts."""

from e3backup.server.routes import (
    agent_api,
    agents,
    alerts,
    audit,
    auth,
    commands,
    destinations,
    enroll,
    folders,
    health,
    jobs,
    proofs,
    recovery,
    restore_points,
    runs,
    tenants,
    usage,
    users,
)

# the agents' calls first: they are most of the requests, and routes are matched in this order
ROUTERS = [
    agent_api.router,
    health.router,
    auth.router,
    tenants.router,
    users.router,
    audit.router,
    alerts.router,
    usage.router,
    destinations.router,
    destinations.tenant_router,
    agents.router,
    folders.router,
    jobs.router,
    runs.router,
    proofs.router,
    restore_points.router,
    commands.router,
    enroll.router,
    recovery.user_router,
    recovery.router,
]

__all__ = ["ROUTERS"]
