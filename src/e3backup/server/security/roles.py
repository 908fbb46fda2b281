"""Who may do what: roles and the permissions they grant.

MSP staff (``msp_admin``) belong to no tenant and administer every tenant. A tenant's users
have one of three roles within their tenant:

- ``admin``: everything of the tenant, including what hands out or sets secrets (jobs and their
  destinations, recovery sessions, enrollment tokens) and the tenant's users;
- ``operator``: runs things: backups now, cancels, restores and maintenance through the agents,
  disk lists; never sees or changes a secret or a destination, no users;
- ``read_only``: sees the tenant's agents, jobs, runs and events.

The API checks a permission per endpoint (``deps``), the dashboard hides what a role may not
do and the same checks guard its forms.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    MSP_ADMIN = "msp_admin"
    ADMIN = "admin"
    OPERATOR = "operator"
    READ_ONLY = "read_only"


TENANT_ROLES = (Role.ADMIN, Role.OPERATOR, Role.READ_ONLY)


class Permission(StrEnum):
    VIEW = "view"  # the tenant's agents, jobs, runs, events, commands
    OPERATE = "operate"  # run now, cancel, restore and maintenance commands, disk refresh
    MANAGE = "manage"  # jobs and destinations, recovery sessions, enrollment tokens, agent revoke
    USERS = "users"  # the tenant's users
    MSP = "msp"  # tenants, MSP staff, every tenant


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.READ_ONLY: frozenset({Permission.VIEW}),
    Role.OPERATOR: frozenset({Permission.VIEW, Permission.OPERATE}),
    Role.ADMIN: frozenset({Permission.VIEW, Permission.OPERATE, Permission.MANAGE, Permission.USERS}),
    Role.MSP_ADMIN: frozenset(Permission),
}

DESCRIPTIONS = {
    Role.MSP_ADMIN: "MSP administrator (every tenant)",
    Role.ADMIN: "Administrator",
    Role.OPERATOR: "Operator",
    Role.READ_ONLY: "Read-only",
}


def allows(role: str, permission: Permission) -> bool:
    try:
        return permission in GRANTS[Role(role)]
    except ValueError:
        return False


__all__ = ["DESCRIPTIONS", "GRANTS", "TENANT_ROLES", "Permission", "Role", "allows"]
