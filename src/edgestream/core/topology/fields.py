"""Value types of the topology: durations, sizes, names, environment references, secrets.

Every parser raises :class:`ValueError` whose text is *what was expected*; the loader turns
that into ``got <value>; expected <text>``.

>>> parse_duration("1m"), parse_duration("500ms"), parse_duration(250), parse_duration("1.5s")
(60000, 500, 250, 1500)
>>> format_duration(600_000), format_duration(1500)
('10m', '1500ms')
>>> parse_size("64MB"), parse_size("1GiB"), parse_size(4096)
(64000000, 1073741824, 4096)
>>> format_size(64_000_000), format_size(1 << 30), format_size(1000 + 1)
('64MB', '1GiB', '1001B')
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    PlainSerializer,
    SecretStr,
    Strict,
    ValidationInfo,
)
from pydantic_core import core_schema

__all__ = [
    "Bool",
    "ByteSize",
    "Duration",
    "EnvSecretStr",
    "EnvStr",
    "Fraction",
    "Frozen",
    "Name",
    "Number",
    "PositiveDuration",
    "PositiveInt",
    "TopicName",
    "deferrable",
    "expand_env",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
    "resolve_env",
    "unset_env",
]


class Frozen(BaseModel):
    """Base of every topology model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


# --- durations --------------------------------------------------------------------------------

_DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_EXAMPLES = "such as '500ms', '10s', '1m', '2h', '7d' or a number of milliseconds"
DURATION_HINT = f"a duration {_DURATION_EXAMPLES}"


def _amount(value: Any, pattern: re.Pattern[str], hint: str) -> tuple[float, str | None]:
    """(number, unit or None) of a plain number or of a string ``pattern`` matches (number and
    unit groups); ``ValueError(hint)`` for anything else."""
    if isinstance(value, bool) or value is None:
        raise ValueError(hint)
    if isinstance(value, int | float):
        return value, None
    match = pattern.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(hint)
    return float(match.group(1)), match.group(2)


def parse_duration(value: Any) -> int:
    """Milliseconds from ``"500ms"``/``"10s"``/``"1m"``/``"2h"``/``"7d"`` or a number of ms."""
    if isinstance(value, str) and value.strip().startswith("-"):
        raise ValueError(f"a duration >= 0 {_DURATION_EXAMPLES}")
    number, unit = _amount(value, _DURATION_RE, DURATION_HINT)
    ms = number * _DURATION_UNITS[unit] if unit else number
    if ms < 0:
        raise ValueError(f"a duration >= 0 {_DURATION_EXAMPLES}")
    if ms != ms or ms == float("inf") or ms != int(ms):
        raise ValueError(f"a whole number of milliseconds ({DURATION_HINT})")
    return int(ms)


def _positive_duration(value: Any) -> int:
    ms = parse_duration(value)
    if ms <= 0:
        raise ValueError(f"a duration > 0 {_DURATION_EXAMPLES}")
    return ms


def format_duration(ms: int) -> str:
    """The shortest exact unit string for ``ms`` (the inverse of :func:`parse_duration`)."""
    for unit in ("d", "h", "m", "s"):
        factor = _DURATION_UNITS[unit]
        if ms and ms % factor == 0:
            return f"{ms // factor}{unit}"
    return f"{ms}ms" if ms else "0s"


_as_duration = PlainSerializer(format_duration, return_type=str, when_used="json")

#: A duration >= 0, normalised to int milliseconds.
Duration = Annotated[int, BeforeValidator(parse_duration), _as_duration]
#: A duration > 0, normalised to int milliseconds.
PositiveDuration = Annotated[int, BeforeValidator(_positive_duration), _as_duration]


# --- sizes -------------------------------------------------------------------------------------

_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
SIZE_HINT = "a size such as '512KB', '64MB', '1GiB' (KB = 1000 B, KiB = 1024 B) or bytes"


def parse_size(value: Any) -> int:
    """Bytes from ``"64MB"`` (decimal), ``"1GiB"`` (binary) or a number of bytes."""
    size, unit = _amount(value, _SIZE_RE, SIZE_HINT)
    if unit is not None:
        size *= _SIZE_UNITS[unit.upper().replace("IB", "iB")]
    if size < 0 or size != int(size):
        raise ValueError(f"a whole number of bytes >= 0 ({SIZE_HINT})")
    return int(size)


def format_size(size: int) -> str:
    """The largest unit that divides ``size`` exactly (inverse of :func:`parse_size`)."""
    for unit, factor in sorted(_SIZE_UNITS.items(), key=lambda kv: -kv[1]):
        if size and factor > 1 and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


#: A size in bytes (>= 0).
ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str, when_used="json"),
]


# --- numbers -----------------------------------------------------------------------------------


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError("an integer >= 1")
    return value


def _fraction(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError("a fraction between 0 and 1")
    return value


#: An integer >= 1.
PositiveInt = Annotated[int, Strict(), AfterValidator(_positive)]
#: A finite number (YAML booleans, strings, .nan and .inf are rejected).
Number = Annotated[float, Strict(), AllowInfNan(False)]
#: A number in [0, 1].
Fraction = Annotated[float, Strict(), AllowInfNan(False), AfterValidator(_fraction)]
#: true or false (YAML's yes/no/on/off count as booleans).
Bool = Annotated[bool, Strict()]


# --- names -------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]+$")
#: Kafka's limit on topic names.
MAX_TOPIC_LENGTH = 249


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            "a name of letters, digits, '.', '_' or '-' starting with a letter or digit "
            "(at most 64 characters)"
        )
    return value


def _topic(value: str) -> str:
    if not _TOPIC_RE.match(value) or value in (".", ".."):
        raise ValueError("a Kafka topic name: only letters, digits, '.', '_' and '-'")
    if len(value) > MAX_TOPIC_LENGTH:
        raise ValueError(f"a Kafka topic name of at most {MAX_TOPIC_LENGTH} characters")
    return value


#: An identifier (gateway id, device type, channel, model name).
Name = Annotated[str, AfterValidator(_name)]
#: A valid Kafka topic name (``[a-zA-Z0-9._-]``, at most 249 characters).
TopicName = Annotated[str, AfterValidator(_topic)]


# --- environment references ------------------------------------------------------------------

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, environ: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in a string with the environment's values.

    >>> expand_env("${HOST:-localhost}:9093", {})
    'localhost:9093'
    >>> expand_env("${NOPE}", {})
    Traceback (most recent call last):
    ...
    ValueError: environment variable NOPE to be set (export it, or give a default: ${NOPE:-value})
    """
    if not isinstance(value, str) or "${" not in value:
        return value
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ValueError(
            f"environment variable {name} to be set (export it, or give a default: "
            f"${{{name}:-value}})"
        )

    return _ENV_RE.sub(substitute, value)


def is_env_reference(value: Any) -> bool:
    """True if ``value`` is a string that references the environment (``${VAR}``)."""
    return isinstance(value, str) and bool(_ENV_RE.search(value))


def unset_env(value: Any, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The variables ``value`` references without a default that the environment lacks.

    >>> unset_env("${HOST:-localhost}:${PORT}", {})
    ('PORT',)
    """
    if not isinstance(value, str):
        return ()
    env = os.environ if environ is None else environ
    found = (m for m in _ENV_RE.finditer(value) if m.group(2) is None)
    return tuple(dict.fromkeys(m.group(1) for m in found if m.group(1) not in env))


#: Validation context key (a set): resolve what the environment has, leave a value that
#: references an unset variable as written and add it to the set. ``edgestream validate``
#: does this (the values are needed at deploy time); every other load resolves or fails.
DEFER_ENV = "defer_env"


def _deferred(value: Any, info: ValidationInfo) -> bool:
    """Whether this validation defers ``value`` (a reference to an unset variable)."""
    deferred = (info.context or {}).get(DEFER_ENV)
    if deferred is None or not unset_env(value):
        return False
    deferred.add(value)
    return True


def resolve_env(value: Any, info: ValidationInfo) -> Any:
    """Field validator: :func:`expand_env`, or the value as written when validation defers it."""
    return value if _deferred(value, info) else expand_env(value)


def deferrable(check: Callable[[str], str]) -> Callable[[str, ValidationInfo], str]:
    """``check`` as an after-validator that lets a deferred ``${VAR}`` reference through."""

    def validate(value: str, info: ValidationInfo) -> str:
        if (info.context or {}).get(DEFER_ENV) is not None and unset_env(value):
            return value
        return check(value)

    return validate


#: A string in which ``${VAR}`` references are resolved from the environment at load time.
EnvStr = Annotated[str, BeforeValidator(resolve_env)]


class EnvSecretStr(SecretStr):
    """A :class:`~pydantic.SecretStr` that may be given as ``${ENV_VAR}``.

    The value is resolved at load time; ``repr``/``str`` show ``**********``; JSON/YAML dumps
    write the ``${ENV_VAR}`` reference back (never the value), or ``**********`` if the secret
    was written literally.

    >>> secret = EnvSecretStr.resolve("${PW}", {"PW": "hunter2"})
    >>> secret, secret.get_secret_value(), secret.reference
    (EnvSecretStr('**********'), 'hunter2', '${PW}')
    """

    def __init__(self, secret_value: str, reference: str | None = None) -> None:
        super().__init__(secret_value)
        self.reference = reference

    @classmethod
    def resolve(cls, value: Any, environ: dict[str, str] | None = None) -> EnvSecretStr:
        """Validate ``value`` (a string, possibly ``${VAR}``) into a secret."""
        if isinstance(value, EnvSecretStr):
            return value
        if isinstance(value, SecretStr):
            return cls(value.get_secret_value())
        if not isinstance(value, str):
            raise ValueError("a string (or ${ENV_VAR} to read it from the environment)")
        resolved = expand_env(value, environ)
        return cls(resolved, value if is_env_reference(value) else None)

    @classmethod
    def _validate(cls, value: Any, info: ValidationInfo) -> EnvSecretStr:
        return cls(value, value) if _deferred(value, info) else cls.resolve(value)

    def dumped(self) -> str:
        """What dumps write: the environment reference, or the mask."""
        return self.reference or "**********"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            cls._validate,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.dumped(), when_used="json"
            ),
        )
