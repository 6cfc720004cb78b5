"""TLS and SASL (PLAIN / SCRAM) settings of the forwarder's cloud connection.

Settings come from the topology's ``forwarding.security`` section; each of these environment
variables, when set, overrides its field (so a deployment can inject a password without
writing it into the topology):

``EDGESTREAM_CLOUD_SECURITY_PROTOCOL``, ``EDGESTREAM_CLOUD_CA_FILE``,
``EDGESTREAM_CLOUD_CERT_FILE``, ``EDGESTREAM_CLOUD_KEY_FILE``,
``EDGESTREAM_CLOUD_SASL_MECHANISM``, ``EDGESTREAM_CLOUD_SASL_USERNAME``,
``EDGESTREAM_CLOUD_SASL_PASSWORD``.

The password is a :class:`pydantic.SecretStr` until :meth:`ClientSecurity.client_config`
hands it to the Kafka client; ``repr``/``str`` and :func:`redact` never show it.

>>> sec = ClientSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
...                      sasl_username="gw", sasl_password=SecretStr("hunter2"))
>>> repr(sec)[:46]
"ClientSecurity(protocol='SASL_PLAINTEXT', sasl"
>>> "sasl_password='***'" in repr(sec), "hunter2" in repr(sec) + str(sec)
(True, False)
>>> sec.client_config()["sasl.password"]
'hunter2'
>>> redact(sec.client_config())["sasl.password"]
'***'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from pydantic import SecretStr

from edgestream.core.exceptions import SecurityConfigError
from edgestream.core.topology import Topology
from edgestream.core.topology.forwarding import Security

__all__ = ["ENV", "ClientSecurity", "redact", "resolve_security"]

log = logging.getLogger("edgestream.forward")

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Field -> environment variable that overrides it.
ENV = {
    "protocol": "EDGESTREAM_CLOUD_SECURITY_PROTOCOL",
    "ca_file": "EDGESTREAM_CLOUD_CA_FILE",
    "cert_file": "EDGESTREAM_CLOUD_CERT_FILE",
    "key_file": "EDGESTREAM_CLOUD_KEY_FILE",
    "sasl_mechanism": "EDGESTREAM_CLOUD_SASL_MECHANISM",
    "sasl_username": "EDGESTREAM_CLOUD_SASL_USERNAME",
    "sasl_password": "EDGESTREAM_CLOUD_SASL_PASSWORD",
}
_SECRET_MARKERS = ("password", "secret", "token", "sasl.oauthbearer.config")


def redact(conf: Mapping[str, object]) -> dict[str, object]:
    """A copy of a client config safe to log: secret values become ``'***'``.

    >>> redact({"bootstrap.servers": "h:9093", "ssl.key.password": "x"})
    {'bootstrap.servers': 'h:9093', 'ssl.key.password': '***'}
    """
    return {
        k: "***" if any(m in k.lower() for m in _SECRET_MARKERS) and v else v
        for k, v in conf.items()
    }


@dataclass(frozen=True, repr=False)
class ClientSecurity:
    """How a Kafka client authenticates to and encrypts its link with the cloud broker."""

    protocol: str = "PLAINTEXT"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    @classmethod
    def from_topology(cls, security: Security, base_dir: Path | None = None) -> ClientSecurity:
        """The topology's settings; relative file paths resolve against ``base_dir``."""
        base = base_dir or Path.cwd()

        def path(p: Path | None) -> Path | None:
            return None if p is None else (base / p).resolve()

        sasl = security.sasl
        return cls(
            protocol=security.protocol,
            ca_file=path(security.ca_file),
            cert_file=path(security.cert_file),
            key_file=path(security.key_file),
            sasl_mechanism=sasl.mechanism if sasl else None,
            sasl_username=sasl.username if sasl else None,
            sasl_password=sasl.password if sasl else None,
        )

    def with_env(self, environ: Mapping[str, str] | None = None) -> ClientSecurity:
        """A copy with every field whose environment variable (:data:`ENV`) is set replaced.

        >>> ClientSecurity().with_env({"EDGESTREAM_CLOUD_SECURITY_PROTOCOL": "SSL"}).protocol
        'SSL'
        """
        env = os.environ if environ is None else environ
        changes: dict[str, object] = {}
        for name, var in ENV.items():
            value = env.get(var)
            if not value:
                continue
            if name == "sasl_password":
                changes[name] = SecretStr(value)
            elif name.endswith("_file"):
                changes[name] = Path(value).expanduser().resolve()
            else:
                changes[name] = value.upper() if name in ("protocol", "sasl_mechanism") else value
        return replace(self, **changes) if changes else self  # type: ignore[arg-type]

    def validate(self) -> ClientSecurity:
        """Check the settings fit together; a :class:`SecurityConfigError` says what to fix."""
        where = "forwarding.security"
        if self.protocol not in PROTOCOLS:
            raise SecurityConfigError(
                f"{where}.protocol is {self.protocol!r}: use one of {', '.join(PROTOCOLS)}"
            )
        tls = self.protocol in ("SSL", "SASL_SSL")
        sasl = self.protocol.startswith("SASL_")
        if not tls and (self.ca_file or self.cert_file or self.key_file):
            raise SecurityConfigError(
                f"{where} has TLS files but protocol {self.protocol}: use SSL or SASL_SSL"
            )
        if bool(self.cert_file) != bool(self.key_file):
            raise SecurityConfigError(
                f"{where}: mutual TLS needs both cert_file and key_file (or neither)"
            )
        for label in ("ca_file", "cert_file", "key_file"):
            file = getattr(self, label)
            if file is not None and not Path(file).is_file():
                raise SecurityConfigError(f"{where}.{label} {file} is not a readable file")
        if sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise SecurityConfigError(
                    f"{where}.sasl.mechanism is {self.sasl_mechanism!r}: use one of "
                    f"{', '.join(MECHANISMS)}"
                )
            if not self.sasl_username or not self.sasl_password:
                raise SecurityConfigError(
                    f"{where}.sasl needs username and password (e.g. password: ${{CLOUD_PASSWORD}}"
                    f" or {ENV['sasl_password']})"
                )
            if self.protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN":
                log.warning("SASL PLAIN without TLS sends the password in clear: use SASL_SSL")
        elif self.sasl_username or self.sasl_password:
            raise SecurityConfigError(
                f"{where} has SASL credentials but protocol {self.protocol}: use SASL_PLAINTEXT "
                "or SASL_SSL"
            )
        return self

    def client_config(self) -> dict[str, object]:
        """librdkafka settings (``security.protocol``, ``ssl.*``, ``sasl.*``), secret included:
        pass it to the client only, log :func:`redact` of it."""
        conf: dict[str, object] = {"security.protocol": self.protocol}
        if self.ca_file:
            conf["ssl.ca.location"] = str(self.ca_file)
        if self.cert_file and self.key_file:
            conf["ssl.certificate.location"] = str(self.cert_file)
            conf["ssl.key.location"] = str(self.key_file)
        if self.protocol.startswith("SASL_"):
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else ""
            )
        return conf

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name == "protocol" and value == "PLAINTEXT" and len(shown)):
                continue
            text = "'***'" if f.name == "sasl_password" else repr(str(value))
            shown.append(f"{f.name}={text}")
        return f"ClientSecurity({', '.join(shown)})"

    __str__ = __repr__


def resolve_security(
    topology: Topology | None, environ: Mapping[str, str] | None = None
) -> ClientSecurity:
    """The cloud connection's settings: the topology's, overridden by :data:`ENV`, validated."""
    base = (
        ClientSecurity()
        if topology is None
        else ClientSecurity.from_topology(topology.forwarding.security, topology.base_dir)
    )
    return base.with_env(environ).validate()
