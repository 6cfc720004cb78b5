"""Clients of a Confluent-compatible schema registry (ours or any other): one per URL.

>>> registry_client("mock://doc") is registry_client({"url": "mock://doc"})
True
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError

from edgestream.core.exceptions import SchemaError, ServiceUnavailable
from edgestream.core.registry.auth import USER_INFO_ENV, user_info

RegistryLike = SchemaRegistryClient | str | dict

_CLIENTS: dict[str, SchemaRegistryClient] = {}
_CLIENTS_LOCK = threading.Lock()
# Fail fast when the registry is down: the client's defaults retry for seconds.
_CLIENT_DEFAULTS = {"max.retries": 1, "retries.wait.ms": 100, "timeout": 10}


def registry_client(url_or_conf: str | dict[str, Any]) -> SchemaRegistryClient:
    """confluent-kafka's registry client for a URL or client config, one per URL (cached).

    ``mock://name`` URLs give confluent-kafka's in-memory mock registry (tests). A registry
    with users gets ``$EDGESTREAM_REGISTRY_USER_INFO`` (``name:password``) as
    ``basic.auth.user.info``, unless the config or the URL has credentials of its own.

    >>> registry_client("mock://doc") is registry_client({"url": "mock://doc"})
    True
    """
    conf = {"url": url_or_conf} if isinstance(url_or_conf, str) else dict(url_or_conf)
    url = conf.get("url")
    if not isinstance(url, str) or not url:
        raise SchemaError("a schema registry URL is needed: pass --registry URL")
    conf["url"] = url = url.rstrip("/")
    if not url.startswith("mock://"):
        conf = {**_CLIENT_DEFAULTS, **conf}
        credentials = user_info()
        if credentials and "basic.auth.user.info" not in conf and "@" not in url:
            conf["basic.auth.user.info"] = credentials
    key = json.dumps(conf, sort_keys=True, default=str)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = SchemaRegistryClient.new_client(conf)
        return client


def as_registry_client(registry: RegistryLike) -> SchemaRegistryClient:
    """A client as is; a URL or config through :func:`registry_client`."""
    return registry if isinstance(registry, SchemaRegistryClient) else registry_client(registry)


def registry_url(client: SchemaRegistryClient) -> str:
    """The URL a registry client talks to (for messages)."""
    try:
        return str(client.config()["url"])
    except Exception:
        return "<unknown url>"


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network errors of the HTTP library the registry client uses (httpx2, else httpx)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):
        with suppress(ImportError, AttributeError):
            errors.append(importlib.import_module(module).TransportError)
    return tuple(errors)


_TRANSPORT_ERRORS = _transport_errors()


@contextmanager
def registry_call(client: SchemaRegistryClient) -> Iterator[None]:
    """Turn 'cannot reach the registry' (or 'refused our credentials') into
    :class:`ServiceUnavailable`."""
    try:
        yield
    except _TRANSPORT_ERRORS:
        raise ServiceUnavailable(
            f"schema registry at {registry_url(client)} is not answering: start it with "
            "`edgestream stack start` or pass --registry"
        ) from None
    except SchemaRegistryError as error:
        if error.http_status_code in (401, 403):
            raise ServiceUnavailable(
                f"schema registry at {registry_url(client)} refused the request "
                f"({error.http_status_code}): {error.error_message} (set "
                f"{USER_INFO_ENV}=name:password of a registry user"
                + (" with write access)" if error.http_status_code == 403 else ")")
            ) from None
        if error.http_status_code >= 500 or error.http_status_code < 0:
            raise ServiceUnavailable(
                f"schema registry at {registry_url(client)} failed: {error.error_message} "
                "(check its log, or pass another --registry)"
            ) from None
        raise
