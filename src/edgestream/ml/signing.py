"""Signing and verification of model updates: Ed25519 over a canonical message.

The retrainer (and ``edgestream models publish``) signs each ModelUpdate it publishes on
``fleet.models``; a gateway verifies the record before it loads the artifact. The signature
covers a canonical byte string that binds everything a gateway acts on:

* ``model_name``, ``version``, ``device_type``: which model slot the artifact goes into;
* ``sha256``: the hex digest of the ONNX bytes (the artifact itself is checked against it);
* ``inputs`` (feature names in input order) and ``threshold``: how the model is fed and read.

Why Ed25519 over a canonical message rather than OpenSSF ``model-signing``: ``model-signing``
signs a manifest of the files of a model directory, wraps it in a Sigstore bundle and pulls
the sigstore client stack in with it. We ship a single ONNX artifact inline in one Kafka
record, and the fields a gateway trusts (threshold, inputs, version) live in that record, not
in files. Ed25519 (RFC 8032, via ``cryptography``) over a versioned, canonical encoding of the
digest plus that metadata is the standard primitive for this, is small enough to audit in one
read, and verifies in microseconds on a gateway. Keys are PEM files or environment variables
(topology ``retraining.signing``), generated at run time and never kept in the repository.

>>> import hashlib
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> key = Ed25519PrivateKey.generate()
>>> onnx = b"onnx bytes"
>>> update = {"model_name": "reefer-ae", "version": "v2", "device_type": "reefer",
...           "sha256": hashlib.sha256(onnx).hexdigest(), "artifact": onnx,
...           "inputs": ["temp_mean"], "threshold": 3.5}
>>> signed = sign_update(update, key)
>>> signed["signature_alg"], signed["key_id"] == key_id(key.public_key())
('ed25519', True)
>>> verify_update(signed, key.public_key())
>>> verify_update({**signed, "threshold": 9.0}, key.public_key())
Traceback (most recent call last):
...
edgestream.ml.exceptions.ModelRejected: model update rejected (bad-signature): ...
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgestream.ml.exceptions import ModelRejected, SigningKeyError

__all__ = [
    "ALGORITHM",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "REASONS",
    "ModelRejected",
    "SigningKeyError",
    "canonical_message",
    "generate_key_pair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "sign_update",
    "verify_update",
]

ALGORITHM = "ed25519"
REASONS = ("unsigned", "bad-signature", "hash-mismatch", "unknown-key")
PRIVATE_KEY_FILE = "model-signing.key.pem"
PUBLIC_KEY_FILE = "model-signing.pub.pem"
# Versioned domain separator: a signature over a model update never verifies as anything else.
_DOMAIN = b"edgestream.model-update.v1\n"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class SigningConfig(Protocol):
    """Where keys are: topology ``retraining.signing`` (``core.topology.cloud.Signing``)."""

    key_file: Path | None
    key_env: str | None
    public_key_file: Path | None
    public_key_env: str | None


def canonical_message(update: Mapping[str, Any]) -> bytes:
    """The exact bytes signed for ``update``: a domain tag and the signed fields as compact JSON.

    Keys are sorted, there is no whitespace, strings are ASCII-escaped and the threshold is a
    float (``null`` when absent), so every producer and verifier derives the same bytes from
    the same record. Raises :class:`ValueError` naming the field when one is malformed.

    >>> canonical_message({"model_name": "m", "version": "v2", "sha256": "0" * 64,
    ...                    "inputs": ["a"], "threshold": 1})[:27]
    b'edgestream.model-update.v1\\n'
    """
    fields = {
        "model_name": _text(update, "model_name"),
        "version": _text(update, "version"),
        "device_type": _optional_text(update, "device_type"),
        "sha256": _digest(update.get("sha256")),
        "inputs": _inputs(update.get("inputs", [])),
        "threshold": _threshold(update.get("threshold")),
    }
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _DOMAIN + body.encode("ascii")


def key_id(public_key: Ed25519PublicKey) -> str:
    """Fingerprint of a public key: the first 16 hex digits of sha256 of its raw 32 bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_update(update: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of ``update`` with ``signature``, ``signature_alg`` and ``key_id`` filled in.

    When the artifact is inline it must hash to ``sha256`` (a :class:`ValueError` otherwise):
    we never sign a record that a gateway would reject.
    """
    artifact = update.get("artifact")
    if artifact is not None and hashlib.sha256(artifact).hexdigest() != update.get("sha256"):
        raise ValueError(
            f"artifact of {update.get('model_name')!r} {update.get('version')!r} does not hash "
            "to its sha256 field: set sha256 = hashlib.sha256(artifact).hexdigest() before signing"
        )
    signed = dict(update)
    signed["signature"] = private_key.sign(canonical_message(update))
    signed["signature_alg"] = ALGORITHM
    signed["key_id"] = key_id(private_key.public_key())
    return signed


def verify_update(
    update: Mapping[str, Any],
    public_key: Ed25519PublicKey,
    *,
    artifact: bytes | None = None,
    require_artifact: bool = True,
) -> None:
    """Check ``update``'s signature and artifact hash; raise :class:`ModelRejected` if bad.

    The artifact checked is ``artifact`` when given (an ``artifact_uri`` fetched by the
    caller), else the record's inline ``artifact``. ``require_artifact=False`` verifies only
    the signed metadata (e.g. a ``promote`` record that names an already verified version).
    Order: ``unsigned``, ``unknown-key``, ``bad-signature``, ``hash-mismatch``.
    """
    name = f"{update.get('model_name')!r} {update.get('version')!r}"
    signature = update.get("signature")
    if not signature:
        raise ModelRejected("unsigned", f"{name} carries no signature")
    expected_id = key_id(public_key)
    if update.get("key_id") != expected_id:
        raise ModelRejected(
            "unknown-key",
            f"{name} is signed by key {update.get('key_id')!r}, we trust {expected_id!r}",
        )
    alg = update.get("signature_alg", ALGORITHM)
    if alg != ALGORITHM:
        raise ModelRejected("bad-signature", f"{name} uses signature_alg {alg!r}, not 'ed25519'")
    try:
        message = canonical_message(update)
    except ValueError as error:
        raise ModelRejected("bad-signature", f"{name} is malformed: {error}") from None
    try:
        public_key.verify(bytes(signature), message)
    except InvalidSignature:
        raise ModelRejected("bad-signature", f"{name}: signature does not match") from None
    data = artifact if artifact is not None else update.get("artifact")
    if data is None:
        if require_artifact:
            raise ModelRejected(
                "hash-mismatch", f"{name} has no artifact bytes to check against its sha256"
            )
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual != update["sha256"]:
        raise ModelRejected(
            "hash-mismatch",
            f"{name}: artifact hashes to {actual[:16]}..., the signed sha256 is "
            f"{update['sha256'][:16]}...",
        )


def load_private_key(signing_cfg: SigningConfig) -> Ed25519PrivateKey:
    """The private key named by ``signing_cfg``: PEM file ``key_file`` or PEM in ``key_env``."""
    pem, where = _pem(signing_cfg.key_file, signing_cfg.key_env, "key")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise SigningKeyError(f"{where} is not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{where} holds a {type(key).__name__}, need an Ed25519 key")
    return key


def load_public_key(signing_cfg: SigningConfig) -> Ed25519PublicKey:
    """The public key named by ``signing_cfg``: ``public_key_file`` or PEM in ``public_key_env``."""
    pem, where = _pem(signing_cfg.public_key_file, signing_cfg.public_key_env, "public_key")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise SigningKeyError(f"{where} is not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{where} holds a {type(key).__name__}, need an Ed25519 key")
    return key


def generate_key_pair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair as PEM into ``out_dir``; return (private, public) paths.

    The private key file is created with mode 0600 (never readable by others, not even
    briefly); an existing key pair is not overwritten (:class:`SigningKeyError`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_KEY_FILE, out_dir / PUBLIC_KEY_FILE
    for path in (private_path, public_path):
        if path.exists():
            raise SigningKeyError(f"{path} exists: remove it or choose another --out directory")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def _pem(file: Path | None, env: str | None, prefix: str) -> tuple[bytes, str]:
    if file is not None:
        path = Path(file).expanduser()
        try:
            return path.read_bytes(), str(path)
        except OSError as error:
            raise SigningKeyError(
                f"cannot read retraining.signing.{prefix}_file {path}: {error.strerror}; "
                "make a key pair with `edgestream models keygen --out DIR`"
            ) from None
    if env is not None:
        value = os.environ.get(env, "").strip()
        if value:
            return value.encode(), f"environment variable {env}"
        raise SigningKeyError(
            f"no signing {prefix.replace('_', ' ')}: set {env} to a PEM key or set "
            f"retraining.signing.{prefix}_file; make a key pair with "
            "`edgestream models keygen --out DIR`"
        )
    raise SigningKeyError(f"retraining.signing names no {prefix}_file and no {prefix}_env")


def _text(update: Mapping[str, Any], field: str) -> str:
    value = update.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")
    return value


def _optional_text(update: Mapping[str, Any], field: str) -> str | None:
    value = update.get(field)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{field} must be a string or null, got {value!r}")
    return value


def _digest(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ValueError(f"sha256 must be 64 lowercase hex digits, got {value!r}")
    return value


def _inputs(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"inputs must be a list of feature names, got {value!r}")
    return list(value)


def _threshold(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"threshold must be a finite number or null, got {value!r}")
    return float(value)
