"""How the dashboard serves: address, port, token; which cloud topics it reads.

Loopback by default. Any other address needs a token, and then every request must carry it
(``Authorization: Bearer``, the cookie the first page sets, or ``?token=``):

>>> DashboardConfig().url
'http://127.0.0.1:8787/'
>>> DashboardConfig(host="0.0.0.0")
Traceback (most recent call last):
...
edgestream.dashboard.exceptions.DashboardError: --host 0.0.0.0 is beyond loopback: anyone on \
the network could read the fleet; give --token (or EDGESTREAM_DASHBOARD_TOKEN) and every \
request must carry it
>>> DashboardConfig(host="0.0.0.0", token="s3cret-token-value").url
'http://0.0.0.0:8787/'
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from edgestream.dashboard.exceptions import DashboardError

__all__ = ["TOKEN_ENV", "DashboardConfig", "is_loopback"]

TOKEN_ENV = "EDGESTREAM_DASHBOARD_TOKEN"
MIN_TOKEN_CHARS = 12


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DashboardConfig:
    """Where the dashboard listens and who may read it (validated on creation)."""

    host: str = "127.0.0.1"
    port: int = 8787  # 0: any free port
    token: str | None = field(default=None, repr=False)
    stale_after_s: float = 120.0  # a gateway not heard from for this long shows as down

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise DashboardError(
                f"--host {self.host} is beyond loopback: anyone on the network could read "
                f"the fleet; give --token (or {TOKEN_ENV}) and every request must carry it"
            )
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise DashboardError(
                f"the dashboard token is {len(self.token)} characters: give at least "
                f"{MIN_TOKEN_CHARS}, e.g. from `python -c 'import secrets; "
                "print(secrets.token_urlsafe())'`"
            )
        if not 0 <= self.port <= 65535:
            raise DashboardError(f"--port {self.port}: expected 0 (any free port) to 65535")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"
