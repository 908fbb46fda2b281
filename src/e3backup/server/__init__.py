"""The control-plane server: FastAPI app, database, scheduler and the agent/user/recovery APIs.

``create_app(settings)`` builds the app; ``Settings`` is its one configuration object.
"""

from e3backup.server.app import create_app
from e3backup.server.clock import Clock, SystemClock
from e3backup.server.config import Settings

__all__ = ["Clock", "Settings", "SystemClock", "create_app"]
