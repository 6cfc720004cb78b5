"""Model update signing: round trip, and each way a record can be refused."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestream.core.topology.cloud import Signing
from edgestream.ml import signing
from edgestream.ml.exceptions import ModelRejected, SigningKeyError
from edgestream.ml.signing import (
    canonical_message,
    generate_key_pair,
    key_id,
    load_private_key,
    load_public_key,
    sign_update,
    verify_update,
)
from tests.support.doctests import run_doctests

ONNX = b"\x08\x07 pretend onnx bytes \x00\xff"


def _update(**changes: object) -> dict[str, object]:
    update: dict[str, object] = {
        "model_name": "reefer-ae",
        "version": "v2",
        "action": "candidate",
        "device_type": "reefer",
        "sha256": hashlib.sha256(ONNX).hexdigest(),
        "artifact": ONNX,
        "inputs": ["temp_mean", "temp_std", "door_open"],
        "threshold": 3.25,
        "signature": None,
        "key_id": None,
    }
    update.update(changes)
    return update


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _reason(update: dict[str, object], key: Ed25519PrivateKey, **kwargs: object) -> str:
    with pytest.raises(ModelRejected) as caught:
        verify_update(update, key.public_key(), **kwargs)
    assert caught.value.reason in signing.REASONS
    return caught.value.reason


def test_docstring_examples() -> None:
    run_doctests(signing)


def test_round_trip(key: Ed25519PrivateKey) -> None:
    signed = sign_update(_update(), key)
    assert signed["signature_alg"] == "ed25519"
    assert signed["key_id"] == key_id(key.public_key())
    assert len(signed["signature"]) == 64
    verify_update(signed, key.public_key())
    # metadata-only check, and an artifact given out of band (artifact_uri case)
    verify_update({**signed, "artifact": None}, key.public_key(), require_artifact=False)
    verify_update({**signed, "artifact": None}, key.public_key(), artifact=ONNX)


def test_unsigned_fields_do_not_matter(key: Ed25519PrivateKey) -> None:
    signed = sign_update(_update(), key)
    verify_update({**signed, "action": "promote", "metrics": {"x": 1.0}}, key.public_key())


def test_tampered_artifact(key: Ed25519PrivateKey) -> None:
    signed = sign_update(_update(), key)
    assert _reason({**signed, "artifact": ONNX + b"\x00"}, key) == "hash-mismatch"
    assert _reason({**signed, "artifact": None}, key, artifact=b"other") == "hash-mismatch"
    assert _reason({**signed, "artifact": None}, key) == "hash-mismatch"


def test_tampered_artifact_with_matching_hash(key: Ed25519PrivateKey) -> None:
    signed = sign_update(_update(), key)
    evil = b"evil onnx"
    forged = {**signed, "artifact": evil, "sha256": hashlib.sha256(evil).hexdigest()}
    assert _reason(forged, key) == "bad-signature"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_name", "pump-ae"),
        ("version", "v3"),
        ("device_type", "pump"),
        ("device_type", None),
        ("inputs", ["temp_std", "temp_mean", "door_open"]),
        ("inputs", ["temp_mean", "temp_std"]),
        ("threshold", 3.2500001),
        ("threshold", None),
    ],
)
def test_tampered_metadata(key: Ed25519PrivateKey, field: str, value: object) -> None:
    signed = sign_update(_update(), key)
    assert _reason({**signed, field: value}, key) == "bad-signature"


def test_tampered_signature_bytes(key: Ed25519PrivateKey) -> None:
    signed = sign_update(_update(), key)
    sig = bytearray(signed["signature"])
    sig[10] ^= 1
    assert _reason({**signed, "signature": bytes(sig)}, key) == "bad-signature"
    assert _reason({**signed, "signature_alg": "rsa"}, key) == "bad-signature"
    assert _reason({**signed, "sha256": "XYZ"}, key) == "bad-signature"


def test_wrong_key(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    signed = sign_update(_update(), other)
    assert _reason(signed, key) == "unknown-key"
    # a forger who copies our key_id still fails on the signature
    assert _reason({**signed, "key_id": key_id(key.public_key())}, key) == "bad-signature"


@pytest.mark.parametrize("missing", [None, b""])
def test_unsigned(key: Ed25519PrivateKey, missing: bytes | None) -> None:
    assert _reason(_update(signature=missing), key) == "unsigned"
    no_field = {k: v for k, v in _update().items() if k != "signature"}
    assert _reason(no_field, key) == "unsigned"


def test_sign_refuses_inconsistent_artifact(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="does not hash"):
        sign_update(_update(artifact=b"other bytes"), key)


def test_canonical_message_is_stable_and_typed() -> None:
    one = canonical_message(_update(threshold=3))
    assert one == canonical_message(_update(threshold=3.0))
    assert one == canonical_message({**_update(threshold=3), "metrics": {"a": 1.0}})
    assert one.startswith(b"edgestream.model-update.v1\n{")
    with pytest.raises(ValueError, match="threshold"):
        canonical_message(_update(threshold=float("nan")))
    with pytest.raises(ValueError, match="model_name"):
        canonical_message(_update(model_name=""))
    with pytest.raises(ValueError, match="inputs"):
        canonical_message(_update(inputs="temp_mean"))


def test_keygen_files_and_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private, public = generate_key_pair(tmp_path / "keys")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    with pytest.raises(SigningKeyError, match="exists"):
        generate_key_pair(tmp_path / "keys")
    cfg = Signing(key_file=private, public_key_file=public)
    priv, pub = load_private_key(cfg), load_public_key(cfg)
    verify_update(sign_update(_update(), priv), pub)
    # the same keys through environment variables
    monkeypatch.setenv("ES_TEST_KEY", private.read_text())
    monkeypatch.setenv("ES_TEST_PUB", public.read_text())
    env_cfg = Signing(key_env="ES_TEST_KEY", public_key_env="ES_TEST_PUB")
    verify_update(sign_update(_update(), load_private_key(env_cfg)), load_public_key(env_cfg))


def test_key_errors_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ES_TEST_UNSET", raising=False)
    with pytest.raises(SigningKeyError, match=r"set ES_TEST_UNSET.*keygen"):
        load_private_key(Signing(key_env="ES_TEST_UNSET"))
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_public_key(Signing(public_key_file=tmp_path / "nope.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM private key"):
        load_private_key(Signing(key_file=garbage))
    _, public = generate_key_pair(tmp_path / "k")
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM private key"):
        load_private_key(Signing(key_file=public))
