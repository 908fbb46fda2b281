"""The URL paths of the agent and recovery-console calls (all ``POST`` with JSON bodies).

The agent's server client builds its requests from these, so a path never drifts between the two
sides (a server test checks every one is routed).
"""

from __future__ import annotations

AGENT_ENROLL = "/api/agent/enroll"
AGENT_NEXT_RUN = "/api/agent/next_run"
AGENT_UPDATE_RUN = "/api/agent/update_run"
AGENT_PUSH_EVENTS = "/api/agent/push_events"
AGENT_POLL_COMMANDS = "/api/agent/poll_commands"
AGENT_ACK_COMMAND = "/api/agent/ack_command"
AGENT_REPORT_DISKS = "/api/agent/report_disks"
AGENT_REPORT_PROOF = "/api/agent/report_proof"

RECOVERY_REDEEM = "/api/recovery/redeem"
RECOVERY_GET_RUN = "/api/recovery/get_run"
RECOVERY_UPDATE_RUN = "/api/recovery/update_run"
RECOVERY_PUSH_EVENTS = "/api/recovery/push_events"
RECOVERY_GET_RUN_STATUS = "/api/recovery/get_run_status"
RECOVERY_GET_RUN_EVENTS = "/api/recovery/get_run_events"
RECOVERY_POLL_CANCEL = "/api/recovery/poll_cancel"
RECOVERY_REFRESH_SESSION = "/api/recovery/refresh_session"

AGENT_PATHS = (
    AGENT_ENROLL,
    AGENT_NEXT_RUN,
    AGENT_UPDATE_RUN,
    AGENT_PUSH_EVENTS,
    AGENT_POLL_COMMANDS,
    AGENT_ACK_COMMAND,
    AGENT_REPORT_DISKS,
    AGENT_REPORT_PROOF,
)
RECOVERY_PATHS = (
    RECOVERY_REDEEM,
    RECOVERY_GET_RUN,
    RECOVERY_UPDATE_RUN,
    RECOVERY_PUSH_EVENTS,
    RECOVERY_GET_RUN_STATUS,
    RECOVERY_GET_RUN_EVENTS,
    RECOVERY_POLL_CANCEL,
    RECOVERY_REFRESH_SESSION,
)

__all__ = [
    "AGENT_ACK_COMMAND",
    "AGENT_ENROLL",
    "AGENT_NEXT_RUN",
    "AGENT_PATHS",
    "AGENT_POLL_COMMANDS",
    "AGENT_PUSH_EVENTS",
    "AGENT_REPORT_DISKS",
    "AGENT_REPORT_PROOF",
    "AGENT_UPDATE_RUN",
    "RECOVERY_GET_RUN",
    "RECOVERY_GET_RUN_EVENTS",
    "RECOVERY_GET_RUN_STATUS",
    "RECOVERY_PATHS",
    "RECOVERY_POLL_CANCEL",
    "RECOVERY_PUSH_EVENTS",
    "RECOVERY_REDEEM",
    "RECOVERY_REFRESH_SESSION",
    "RECOVERY_UPDATE_RUN",
]
