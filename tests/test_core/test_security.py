"""Cloud connection settings: topology/env -> librdkafka, validation, secrets never shown.

Here the settings as a mapping; the handshakes against a real Kafka listener (SSL, and
SASL_SSL with SCRAM-SHA-512) are in ``tests/test_forward/test_tls.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from edgestream.core import security
from edgestream.core.exceptions import SecurityConfigError
from edgestream.core.security import ClientSecurity, redact, resolve_security
from edgestream.core.topology import load_topology
from tests.support.doctests import run_doctests
from tests.support.gateway import write_topology


def _topology(tmp_path: Path, sec: dict) -> Path:
    path = write_topology(tmp_path / "t.yaml")
    data = yaml.safe_load(path.read_text())
    data["forwarding"] = {"bootstrap": "cloud.example:9093", "security": sec}
    path.write_text(yaml.safe_dump(data))
    return path


def test_sasl_ssl_from_topology_and_env(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "ca.pem").write_text("x")
    monkeypatch.setenv("CLOUD_PW", "s3cret-pw")
    path = _topology(
        tmp_path,
        {"protocol": "SASL_SSL", "ca_file": "ca.pem",
         "sasl": {"mechanism": "SCRAM-SHA-256", "username": "gw-1", "password": "${CLOUD_PW}"}},
    )  # fmt: skip
    sec = resolve_security(load_topology(path), environ={})
    conf = sec.client_config()
    assert conf == {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(tmp_path / "ca.pem"),
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "gw-1",
        "sasl.password": "s3cret-pw",
    }
    env = {"EDGESTREAM_CLOUD_SASL_PASSWORD": "from-env", "EDGESTREAM_CLOUD_SASL_MECHANISM": "plain"}
    over = resolve_security(load_topology(path), environ=env).client_config()
    assert over["sasl.password"] == "from-env" and over["sasl.mechanism"] == "PLAIN"


def test_secrets_never_appear_in_repr_str_or_logs(caplog) -> None:
    sec = ClientSecurity("SASL_PLAINTEXT", None, None, None, "PLAIN", "u", SecretStr("pw-123"))
    with caplog.at_level(logging.DEBUG):
        sec.validate()  # warns: PLAIN without TLS
        logging.getLogger("t").info("settings %s %r %s", sec, sec, redact(sec.client_config()))
    assert "pw-123" not in caplog.text and "pw-123" not in repr(sec) + str(sec)
    assert "in clear" in caplog.text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"protocol": "TLS"}, "use one of"),
        ({"protocol": "SSL", "cert_file": Path("/etc/hostname")}, "both cert_file and key_file"),
        ({"protocol": "SSL", "ca_file": Path("/nope/ca.pem")}, "not a readable file"),
        ({"protocol": "PLAINTEXT", "ca_file": Path("/etc/hostname")}, "use SSL or SASL_SSL"),
        ({"protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "mechanism"),
        ({"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"}, "password"),
        ({"protocol": "SSL", "sasl_username": "u"}, "SASL credentials"),
    ],
)
def test_inconsistent_settings_say_what_to_fix(changes: dict, message: str) -> None:
    with pytest.raises(SecurityConfigError, match=message):
        ClientSecurity(**changes).validate()


def test_mutual_tls_files(tmp_path: Path) -> None:
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    sec = ClientSecurity.from_topology(
        load_topology(_topology(tmp_path, {"protocol": "SSL", "ca_file": "ca.pem",
                                           "cert_file": "c.pem", "key_file": "k.pem"}))
        .forwarding.security,
        tmp_path,
    ).validate()  # fmt: skip
    conf = sec.client_config()
    assert conf["ssl.certificate.location"].endswith("c.pem")
    assert conf["ssl.key.location"].endswith("k.pem")


def test_docstring_examples_run() -> None:
    run_doctests(security)
