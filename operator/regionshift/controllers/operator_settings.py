"""kopf's settings and login for regionshift: how the operator talks to the API server.

Kept apart from the handlers so that the registry, the runner and the tests can share one
configuration without importing each other.
"""

from __future__ import annotations

import logging

import kopf

from regionshift.adapters import kube
from regionshift.api.models import API_GROUP

__all__ = ["configure_settings", "connection_info"]


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """kopf settings for regionshift.

    Handler progress and the diff base go into annotations: the CRDs' structural schemas
    would prune unknown status fields, and kopf would re-run handlers forever.
    """
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 16


def connection_info() -> kopf.ConnectionInfo:
    """kopf's credentials, from the configuration :mod:`regionshift.adapters.kube` uses."""
    configuration = kube.configure_once()
    api_key = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get("BearerToken")
    scheme, token = (api_key.split(" ", 1) + [""])[:2] if api_key else (None, None)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        scheme=scheme,
        token=token or None,
    )
