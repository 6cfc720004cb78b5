"""Registry API errors: HTTP status + Confluent ``error_code`` + message, as clients expect.

``confluent_kafka.schema_registry.SchemaRegistryError`` carries ``http_status_code``,
``error_code`` and ``error_message`` from the JSON body ``{"error_code", "message"}``.
"""

from __future__ import annotations

VALID_LEVELS_TEXT = (
    "none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
)


class ApiError(Exception):
    """An error answer of the registry API."""

    def __init__(self, http_status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict[str, object]:
        """The JSON body Confluent clients parse."""
        return {"error_code": self.error_code, "message": self.message}


def _error(code: int, message: str) -> ApiError:
    """An error whose HTTP status is the first three digits of its Confluent ``code``."""
    return ApiError(int(str(code)[:3]), code, message)


def subject_not_found(subject: str) -> ApiError:
    return _error(40401, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version: object) -> ApiError:
    return _error(40402, f"Version {version} not found for subject '{subject}'.")


def schema_not_found(what: object = None) -> ApiError:
    suffix = f" {what}" if what is not None else ""
    return _error(40403, f"Schema{suffix} not found")


def subject_soft_deleted(subject: str) -> ApiError:
    return _error(
        40404, f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
    )


def subject_not_soft_deleted(subject: str) -> ApiError:
    return _error(
        40405, f"Subject '{subject}' was not deleted first before being permanently deleted"
    )


def version_soft_deleted(subject: str, version: int) -> ApiError:
    return _error(
        40406,
        f"Subject '{subject}' Version {version} was soft deleted. "
        "Set permanent=true to delete permanently",
    )


def version_not_soft_deleted(subject: str, version: int) -> ApiError:
    return _error(
        40407,
        f"Subject '{subject}' Version {version} was not deleted first before being "
        "permanently deleted",
    )


def subject_config_not_found(subject: str) -> ApiError:
    return _error(
        40408, f"Subject '{subject}' does not have subject-level compatibility configured"
    )


def invalid_schema(detail: str) -> ApiError:
    return _error(42201, f"Invalid schema: {detail}")


def invalid_version(text: str) -> ApiError:
    return _error(
        42202,
        f"The specified version '{text}' is not a valid version id. Allowed values are "
        'between [1, 2^31-1] and the string "latest"',
    )


def invalid_level(level: object) -> ApiError:
    return _error(
        42203, f"Invalid compatibility level {level!r}. Valid values are {VALID_LEVELS_TEXT}"
    )


def invalid_mode(mode: object) -> ApiError:
    return _error(42204, f"Invalid mode {mode!r}: the embedded registry is READWRITE only")


def incompatible(subject: str, problems: list[str]) -> ApiError:
    details = "; ".join(problems)
    return _error(
        409,
        f'Schema being registered is incompatible with an earlier schema for subject "{subject}", '
        f"details: [{details}]",
    )


def bad_request(detail: str) -> ApiError:
    return _error(400, detail)


def not_found(method: str, path: str) -> ApiError:
    return _error(404, f"HTTP 404 Not Found: {method} {path} is not part of this registry")


def unauthorized() -> ApiError:
    return _error(
        40101,
        "Unauthorized: this registry needs HTTP Basic credentials of one of its users "
        "(basic.auth.user.info, or $EDGESTREAM_REGISTRY_USER_INFO for edgestream)",
    )


def forbidden(user: str) -> ApiError:
    return _error(40301, f"User '{user}' is read-only: this request needs a write user")
