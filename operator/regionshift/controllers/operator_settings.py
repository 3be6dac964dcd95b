"""kopf's settings and login for regionshift: how the operator talks to the API server.

Kept apart from the handlers so that the registry, the runner and the tests can share one
configuration without importing each other.

kopf watches the operator's custom resources only. The operator's other watches, of the
Deployments labelled with :data:`regionshift.decide.darkcapacity.ROLE_LABEL` (shadows, and
the targets they shadow) and the pods labelled with
:data:`regionshift.decide.darkcapacity.DARK_CLUSTER_LABEL`, are its own
(:mod:`regionshift.controllers.dark_watches`), with the same label selectors: the API server
filters them, so a namespace with thousands of other pods and Deployments costs the operator
nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from regionshift.adapters import kube
from regionshift.api.models import API_GROUP

__all__ = ["configure_settings", "login"]


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
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.execution.max_workers = 16


def login(*, settings: kopf.OperatorSettings, logger: kopf.Logger, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's credentials, through kopf's own login helpers.

    kopf calls this again whenever the API server answers 401, so credentials that expire
    are fetched anew: with ``--kubeconfig`` the file is read again
    (:func:`kopf.login_with_kubeconfig`, which reads ``$KUBECONFIG``, set by
    :func:`regionshift.adapters.kube.configure`); otherwise the official client logs in
    (:func:`kopf.login_via_client`: the service account's token file, re-read each time, or
    the default kubeconfig with its exec and auth-provider plugins).
    """
    if kube.kubeconfig_path() is not None:
        return kopf.login_with_kubeconfig(settings=settings, logger=logger, **kwargs)
    return kopf.login_via_client(settings=settings, logger=logger, **kwargs)
