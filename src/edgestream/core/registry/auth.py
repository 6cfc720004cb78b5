"""HTTP Basic auth of the embedded registry: read-only and read-write users.

Clients send what Confluent's clients send with ``basic.auth.user.info``: ``Authorization:
Basic base64(name:password)``. Without users the registry is anonymous, which it may only be
on loopback: bound to any other address it refuses to start without them.

Users come from a file (``--users FILE``, else ``$EDGESTREAM_REGISTRY_USERS_FILE``), one a
line, ``name:password:role`` with role ``read`` (GETs, schema lookups, compatibility checks)
or ``write`` (also registering, deleting, changing compatibility or mode); blank lines and
``#`` comments are skipped. Keep the file readable by the registry's user only.

edgestream's own clients (serde, CLI, the cloud job's Python and Java sides, ``up``) send
``$EDGESTREAM_REGISTRY_USER_INFO`` (``name:password``) when it is set.

>>> users = RegistryUsers.parse("# who\\nci:s3cret:write\\nreader:pw:read\\n")
>>> sorted(users.roles)
['ci', 'reader']
>>> users.check(basic_header("reader", "pw"), write=False)
>>> users.check(basic_header("reader", "pw"), write=True).http_status
403
>>> users.check(basic_header("ci", "wrong"), write=False).http_status
401
>>> users.check(None, write=False).http_status
401
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.registry import errors

__all__ = [
    "USERS_FILE_ENV",
    "USER_INFO_ENV",
    "RegistryUsers",
    "basic_header",
    "is_write",
    "load_users",
    "user_info",
]

USERS_FILE_ENV = "EDGESTREAM_REGISTRY_USERS_FILE"
USER_INFO_ENV = "EDGESTREAM_REGISTRY_USER_INFO"
ROLES = ("read", "write")
REALM = "edgestream schema registry"


def basic_header(name: str, password: str) -> str:
    """The ``Authorization`` value of HTTP Basic auth.

    >>> basic_header("a", "b")
    'Basic YTpi'
    """
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def is_write(method: str, parts: list[str]) -> bool:
    """Whether a request changes the registry: every PUT and DELETE, and a POST except a
    schema lookup (``POST /subjects/<s>``) and a compatibility check (``POST
    /compatibility/...``).

    >>> is_write("POST", ["subjects", "s"]), is_write("POST", ["subjects", "s", "versions"])
    (False, True)
    """
    if method == "GET":
        return False
    if method == "POST":
        return not (len(parts) == 2 and parts[0] == "subjects") and parts[:1] != ["compatibility"]
    return True


@dataclass(frozen=True)
class RegistryUsers:
    """Users of the registry: name -> (password, role)."""

    roles: dict[str, tuple[str, str]]

    @classmethod
    def parse(cls, text: str, source: str = "users") -> RegistryUsers:
        """Users from ``name:password:role`` lines; a one-line error naming the bad line."""
        roles: dict[str, tuple[str, str]] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, _, rest = line.partition(":")
            password, _, role = rest.rpartition(":")
            if not name or not password or role not in ROLES:
                raise EdgestreamError(
                    f"{source} line {number}: expected name:password:read or name:password:write"
                )
            roles[name] = (password, role)
        if not roles:
            raise EdgestreamError(f"{source}: no users (lines name:password:read|write)")
        return cls(roles)

    def check(self, authorization: str | None, write: bool) -> errors.ApiError | None:
        """None if the request may go on; else the 401 (no or wrong credentials) or 403 (a
        read-only user's write) to answer."""
        name, password = _credentials(authorization)
        known = self.roles.get(name or "")
        # compare even for an unknown name: the answer takes as long either way
        expected = known[0] if known else "\0"
        matches = hmac.compare_digest(expected.encode(), (password or "").encode())
        if known is None or not matches:
            return errors.unauthorized()
        if write and known[1] != "write":
            return errors.forbidden(str(name))
        return None


def _credentials(authorization: str | None) -> tuple[str | None, str | None]:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else (None, None)


def load_users(
    path: Path | None = None, env: Mapping[str, str] | None = None
) -> RegistryUsers | None:
    """The users of ``path``, else of ``$EDGESTREAM_REGISTRY_USERS_FILE``; None if neither."""
    env = os.environ if env is None else env
    if path is None and env.get(USERS_FILE_ENV, "").strip():
        path = Path(env[USERS_FILE_ENV].strip())
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise EdgestreamError(
            f"cannot read the registry users file {path}: {error.strerror or error}"
        ) from None
    return RegistryUsers.parse(text, str(path))


def user_info(env: Mapping[str, str] | None = None) -> str | None:
    """``name:password`` for our clients (``$EDGESTREAM_REGISTRY_USER_INFO``), None if unset.

    >>> user_info({"EDGESTREAM_REGISTRY_USER_INFO": "ci:pw"}), user_info({})
    ('ci:pw', None)
    """
    env = os.environ if env is None else env
    value = env.get(USER_INFO_ENV, "").strip()
    if value and ":" not in value:
        raise EdgestreamError(f"{USER_INFO_ENV} must be name:password")
    return value or None
