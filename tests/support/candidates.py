"""Candidate models and signed ModelUpdate records for the rollout tests.

Candidates are real ONNX graphs: the shipped pump model with its score scaled (same ranking:
a model the gates pass), or a random linear projection of the features (a worse model: its
ranking has nothing to do with the current one)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import onnx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from onnx import TensorProto, helper, numpy_helper

from edgestream.ml.artifact import shipped_model, shipped_model_path
from edgestream.ml.signing import canonical_message, sign_update

PUMP = shipped_model("pump")


def scaled_model(factor: float) -> bytes:
    """The shipped pump model with ``score * factor``."""
    model = onnx.load(str(shipped_model_path("pump")))
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["score_raw" if o == "score" else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "factor"))
    graph.node.append(helper.make_node("Mul", ["score_raw", "factor"], ["score"]))
    return model.SerializeToString()


def random_model(seed: int = 7) -> bytes:
    """``score = |features @ w|`` with random ``w``: a model that ranks readings at random."""
    w = np.random.default_rng(seed).normal(size=(PUMP.n_features, 1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["proj"]),
            helper.make_node("Abs", ["proj"], ["score"]),
        ],
        "random",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", PUMP.n_features])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model.SerializeToString()


def update(
    blob: bytes,
    version: str,
    threshold: float,
    action: str = "candidate",
    model_name: str = "pump-model",
) -> dict[str, Any]:
    """An unsigned ModelUpdate of a pump model."""
    return {
        "model_name": model_name,
        "version": version,
        "action": action,
        "device_type": "pump",
        "created_at": int(time.time() * 1000),
        "framework": "onnx",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "artifact": blob,
        "artifact_uri": None,
        "signature": None,
        "signature_alg": "ed25519",
        "key_id": None,
        "inputs": list(PUMP.inputs),
        "threshold": threshold,
        "metrics": {},
        "baseline": [],
        "parent_version": PUMP.version,
        "canary_fraction": None,
        "retrain_request_id": None,
    }


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def bad_updates(key: Ed25519PrivateKey) -> dict[str, dict[str, Any]]:
    """Expected reject reason -> update: a tampered artifact, a signature by another key
    under our key id, a signature by an unknown key, and no signature."""
    good = sign_update(update(scaled_model(1.02), "pump-evil", PUMP.threshold * 1.02), key)
    tampered = dict(good)
    art = bytearray(good["artifact"])
    art[len(art) // 2] ^= 0xFF
    tampered["artifact"] = bytes(art)
    other = Ed25519PrivateKey.generate()
    forged = {**good, "signature": other.sign(canonical_message(good))}
    unknown = sign_update({**good, "signature": None}, other)
    unsigned = {**good, "signature": None, "key_id": None}
    return {
        "hash-mismatch": tampered,
        "bad-signature": forged,
        "unknown-key": unknown,
        "unsigned": unsigned,
    }
