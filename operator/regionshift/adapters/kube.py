"""Access to the Kubernetes API: the only module that talks to the API server.

A thin layer over the official (synchronous) client. The operator's handlers are plain
``def`` functions that kopf runs in its thread pool, so blocking calls here never stall
the event loop. Each function does one read or one write and returns plain dicts, so the
decisions stay pure functions over plain data.

Every call carries a timeout (:data:`REQUEST_TIMEOUT`): a hung API server costs a reconcile
some seconds, never a worker thread for good. In a pod, the service-account token is
re-read from its file as the kubelet rotates it (the client's refresh hook); retries of
refused writes are the caller's choice, through :mod:`regionshift.adapters.retries`, except
in :func:`set_evacuation_gate`, whose read, compare and guarded apply are retried as one.

LISTs are read in pages (:data:`PAGE_SIZE`) and parsed page by page, so that no single JSON
decode holds the GIL long. :class:`ObjectWatch` lists and watches one kind in one namespace
on a thread of its own (the dark pods' and the shadows' watches, which kopf does not make).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from regionshift.adapters import retries
from regionshift.api.conditions import now_rfc3339
from regionshift.api.models import API_GROUP, API_VERSION, Gate
from regionshift.errors import TokenSecretNotOptedIn

__all__ = [
    "EVACUATION_FIELD_MANAGER",
    "ObjectWatch",
    "PAGE_SIZE",
    "REQUEST_TIMEOUT",
    "TRANSPLANT_FIELD_MANAGER",
    "annotate_pod_disruption_budget",
    "api_client",
    "ApiException",
    "apply_custom_status",
    "configure",
    "configure_once",
    "create_custom",
    "create_deployment",
    "delete_custom",
    "delete_deployment",
    "kubeconfig_path",
    "list_custom",
    "list_deployments",
    "list_horizontal_pod_autoscalers",
    "list_pod_disruption_budgets",
    "list_pods",
    "list_replicasets",
    "patch_custom",
    "patch_custom_status",
    "patch_deployment_labels",
    "patch_pod_labels",
    "read_configmap_data",
    "read_custom",
    "read_deployment",
    "read_secret_value",
    "replace_deployment",
    "rest_configuration",
    "scale_deployment",
    "set_autoscaler_min_replicas",
    "set_evacuation_gate",
    "set_transplanted_replicas",
    "write_configmap",
]

REQUEST_TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds for every call to the API server."""
PAGE_SIZE = 50
"""Items per page of a LIST (``limit``; the rest follows with ``continue``).

A LIST's answer is parsed by one ``json.loads``, a C call that holds the GIL until it ends:
500 Deployments (about 1.5 MB) held it 50 ms on an idle core of the development machine,
and far longer when the thread holding it waited for a CPU, while the event loop waited
for the GIL. The loop gives the GIL away at each of its system calls and takes it back
behind such a hold, so a thread parsing page after page still stalled it: 130 ms, of which
it ran 2, behind pages of 100 (about 10 ms each) at 500 Deployments. A page of 50 holds it
about 5 ms. The pages of one LIST are one consistent snapshot (the API server serves them
all at the first page's resourceVersion)."""
CONNECTION_POOL_SIZE = 32
"""Connections kept to the API server: gate writes run 16 at a time, reconciles in parallel."""
EVACUATION_FIELD_MANAGER = "regionshift-evacuation"
"""Server-side-apply field manager of a DarkCluster's ``status.evacuationGate`` and ``status.evacuationGateSince``."""

TRANSPLANT_FIELD_MANAGER = "regionshift-transplant"
"""Server-side-apply field manager of a DarkCluster's ``status.transplantedReplicas`` and a RegionFailover's
``status.transplants``. Not the evacuation's: an apply removes the fields its manager applied before and
leaves out now, so two writers that apply different fields at different times need a manager each."""

_lock = threading.Lock()
_api: client.ApiClient | None = None
_configuration: client.Configuration | None = None
_kubeconfig: Path | None = None


def rest_configuration(*, kubeconfig: Path | None = None) -> client.Configuration:
    """Client configuration from a kubeconfig file, $KUBECONFIG, or the in-cluster account."""
    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    else:
        try:
            # try_refresh_token: the client re-reads the token file before it expires, so
            # a bound service-account token rotated by the kubelet is picked up.
            config.load_incluster_config(client_configuration=configuration, try_refresh_token=True)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return configuration


def configure(*, kubeconfig: Path | None = None) -> client.Configuration:
    """Point this module at a cluster; returns the configuration used.

    An explicit kubeconfig is exported as ``$KUBECONFIG`` too, so kopf's own login
    (:func:`kopf.login_with_kubeconfig`) reads the same file, again at every re-login.
    """
    global _api, _configuration, _kubeconfig
    with _lock:
        _configuration = rest_configuration(kubeconfig=kubeconfig)
        _api = client.ApiClient(_configuration)
        _kubeconfig = kubeconfig
        if kubeconfig is not None:
            os.environ["KUBECONFIG"] = str(kubeconfig)
    return _configuration


def kubeconfig_path() -> Path | None:
    """The kubeconfig file given to :func:`configure`, or None (in-cluster or the default one)."""
    return _kubeconfig


def configure_once() -> client.Configuration:
    """The current configuration, loading the default one if none was set."""
    if _configuration is None:
        configure()
    assert _configuration is not None
    return _configuration


def api_client() -> client.ApiClient:
    """The shared API client (configured on first use)."""
    return _client()


def _client() -> client.ApiClient:
    if _api is None:
        configure()
    assert _api is not None
    return _api


def _dict(obj: Any) -> dict[str, Any]:
    return _client().sanitize_for_serialization(obj)  # type: ignore[no-any-return]


def _without_nulls(value: Any) -> Any:
    """``value`` without the null fields the API server writes (``creationTimestamp: null`` in a
    pod template, say), as :func:`_dict` leaves them out: the shadow's template hash, made
    from its target's template, stays what it was when Deployments were read as models."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def read_deployment(*, namespace: str, name: str) -> dict[str, Any] | None:
    """A Deployment, or None if it does not exist."""
    try:
        return _without_nulls(_raw(client.AppsV1Api(_client()).read_namespaced_deployment(  # type: ignore[no-any-return]
            name, namespace, _request_timeout=REQUEST_TIMEOUT, _preload_content=False)))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def create_deployment(*, body: dict[str, Any]) -> dict[str, Any]:
    """Create a Deployment."""
    namespace = body["metadata"]["namespace"]
    return _without_nulls(_raw(client.AppsV1Api(_client()).create_namespaced_deployment(  # type: ignore[no-any-return]
        namespace, body, _request_timeout=REQUEST_TIMEOUT, _preload_content=False)))


def replace_deployment(*, body: dict[str, Any]) -> dict[str, Any]:
    """Replace a Deployment wholesale (body carries metadata.resourceVersion)."""
    meta = body["metadata"]
    return _without_nulls(_raw(client.AppsV1Api(_client()).replace_namespaced_deployment(  # type: ignore[no-any-return]
        meta["name"], meta["namespace"], body, _request_timeout=REQUEST_TIMEOUT, _preload_content=False)))


def delete_deployment(*, namespace: str, name: str, uid: str) -> None:
    """Delete one Deployment (only if it still has this uid); its ReplicaSets and pods go by garbage collection."""
    client.AppsV1Api(_client()).delete_namespaced_deployment(
        name, namespace, body={"preconditions": {"uid": uid}, "propagationPolicy": "Background"},
        _request_timeout=REQUEST_TIMEOUT,
    )


def scale_deployment(*, namespace: str, name: str, replicas: int, uid: str) -> None:
    """Set a Deployment's replicas (only if it still has this uid: a JSON patch with a test)."""
    client.AppsV1Api(_client()).patch_namespaced_deployment(
        name, namespace,
        [{"op": "test", "path": "/metadata/uid", "value": uid}, {"op": "replace", "path": "/spec/replicas", "value": replicas}],
        _content_type="application/json-patch+json", _request_timeout=REQUEST_TIMEOUT,
    )


def patch_deployment_labels(*, namespace: str, name: str, labels: Mapping[str, str | None]) -> None:
    """One JSON merge patch of a Deployment's own labels: a value sets a label, None removes it.

    Touches nothing but the named labels (not the spec, not the pod template): no
    resourceVersion, so it never conflicts, and no rollout.
    """
    client.AppsV1Api(_client()).patch_namespaced_deployment(
        name, namespace, {"metadata": {"labels": dict(labels)}},
        _content_type="application/merge-patch+json", _request_timeout=REQUEST_TIMEOUT,
    )


def _raw(response: Any) -> Any:
    """The JSON of an answer taken with ``_preload_content=False``, as plain dicts.

    The same camelCase shape :func:`_dict` gives, without building the client's model
    objects first: listing hundreds of pods that way costs the GIL (and so the event loop)
    ten times what parsing the JSON does.
    """
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


def _paged(call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item of a LIST, read :data:`PAGE_SIZE` at a time and parsed page by page (see :func:`_raw`)."""
    return _listing(call, *args, **kwargs)[0]


def _listing(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], str]:
    """Every item of a LIST, page by page, and the resourceVersion of its snapshot (a watch starts from it).

    A ``continue`` token the API server no longer honours (410 Gone: the snapshot was
    compacted away while we paged, after some minutes) starts the LIST over, once.
    """
    for attempt in (1, 2):
        items: list[dict[str, Any]] = []
        token: str | None = None
        try:
            while True:
                answer = _raw(call(*args, limit=PAGE_SIZE, _continue=token, _request_timeout=REQUEST_TIMEOUT,
                                   _preload_content=False, **kwargs))
                items.extend(answer.get("items") or [])
                meta = answer.get("metadata") or {}
                token = meta.get("continue") or None
                if token is None:
                    return items, str(meta.get("resourceVersion") or "")
        except ApiException as exc:
            if exc.status != 410 or token is None or attempt == 2:
                raise
    raise AssertionError("unreachable")


def list_pods(*, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    """Pods matching a label selector (plain dicts parsed from the JSON, page by page: :func:`_paged`)."""
    return _paged(client.CoreV1Api(_client()).list_namespaced_pod, namespace, label_selector=label_selector)


def patch_pod_labels(*, namespace: str, name: str, labels: Mapping[str, str | None]) -> dict[str, Any]:
    """One JSON merge patch of a pod's labels: a value sets a label, None removes it; returns the pod as written.

    Touches nothing but the named labels: no resourceVersion, so it never conflicts, and
    writing the same labels twice is a no-op.
    """
    answer = _raw(client.CoreV1Api(_client()).patch_namespaced_pod(
        name, namespace, {"metadata": {"labels": dict(labels)}}, _content_type="application/merge-patch+json",
        _request_timeout=REQUEST_TIMEOUT, _preload_content=False,
    ))
    return answer  # type: ignore[no-any-return]


def list_pod_disruption_budgets(*, namespace: str) -> list[dict[str, Any]]:
    """Every PodDisruptionBudget of a namespace."""
    items = client.PolicyV1Api(_client()).list_namespaced_pod_disruption_budget(namespace, _request_timeout=REQUEST_TIMEOUT).items
    return [_dict(b) for b in items]


def annotate_pod_disruption_budget(*, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
    """Merge annotations into a PodDisruptionBudget's metadata (its spec and generation stay as they are)."""
    client.PolicyV1Api(_client()).patch_namespaced_pod_disruption_budget(
        name, namespace, {"metadata": {"annotations": dict(annotations)}}, _content_type="application/merge-patch+json",
        _request_timeout=REQUEST_TIMEOUT,
    )


def read_custom(*, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """One regionshift custom resource, or None if it does not exist."""
    try:
        return client.CustomObjectsApi(_client()).get_namespaced_custom_object(  # type: ignore[no-any-return]
            API_GROUP, API_VERSION, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def patch_custom_status(*, plural: str, namespace: str, name: str, status: dict[str, Any],
                        field_manager: str | None = None) -> None:
    """Merge-patch the status subresource of a regionshift custom resource (a few fields of a large status)."""
    extra = {"field_manager": field_manager} if field_manager else {}
    client.CustomObjectsApi(_client()).patch_namespaced_custom_object_status(
        API_GROUP, API_VERSION, namespace, plural, name, {"status": status}, _request_timeout=REQUEST_TIMEOUT,
        _content_type="application/merge-patch+json", **extra,
    )


def apply_custom_status(
    *, plural: str, kind: str, namespace: str, name: str, status: dict[str, Any], field_manager: str
) -> dict[str, Any]:
    """Server-side apply of the status subresource under one field manager.

    Each writer of a resource's status owns its own fields (and its own conditions, since
    ``conditions`` is a list map keyed by ``type``): two writers never overwrite each
    other, and there is no read-modify-write to lose an update. ``force`` takes over fields
    an older version of the operator wrote with a merge patch.
    """
    body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": kind,
            "metadata": {"name": name, "namespace": namespace}, "status": status}
    return client.CustomObjectsApi(_client()).patch_namespaced_custom_object_status(  # type: ignore[no-any-return]
        API_GROUP, API_VERSION, namespace, plural, name, body,
        field_manager=field_manager, force=True, _content_type="application/apply-patch+yaml",
        _request_timeout=REQUEST_TIMEOUT,
    )


def set_evacuation_gate(*, namespace: str, name: str, gate: Gate, listed: Mapping[str, Any] | None = None) -> None:
    """Hold a DarkCluster's evacuation gate at ``gate``: ``status.evacuationGate`` and its ``Since``.

    A server-side apply of exactly those two fields on the status subresource under
    :data:`EVACUATION_FIELD_MANAGER`, forced, so the evacuation always owns them; nothing
    else of the DarkCluster changes hands (not its spec, which its owner or a GitOps tool
    keeps; not the DarkCluster controller's status fields). The DarkCluster controller
    combines the two gates (:func:`regionshift.decide.gate.effective_gate`) and is woken by
    the write.

    Idempotent by reading first: when ``status.evacuationGate`` already is ``gate`` nothing
    is written, so ``evacuationGateSince`` keeps the time the gate last changed. The apply
    carries the resourceVersion that was read, so a DarkCluster written meanwhile (its
    controller's status, or a recreated object) answers 409 and the read, the comparison
    and the apply are made again (:func:`regionshift.adapters.retries.call`, as for every
    refused write). Raises :class:`ApiException` 404 when the DarkCluster does not exist,
    and the last refusal once the retries give up.

    ``listed``: the DarkCluster as the caller just listed it. The first attempt compares
    and applies on it instead of reading it again (one request, not two, per DarkCluster
    when an evacuation opens hundreds); its resourceVersion guards the apply the same way,
    so a DarkCluster that moved since the LIST answers 409 and the retry reads it afresh.
    """
    wanted = Gate(gate).value
    first = [listed] if listed is not None else []

    def once() -> None:
        body = first.pop() if first else read_custom(plural="darkclusters", namespace=namespace, name=name)
        if body is None:
            raise ApiException(status=404, reason=f"DarkCluster {namespace}/{name} not found")
        if (body.get("status") or {}).get("evacuationGate") == wanted:
            return
        apply = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "DarkCluster",
                 "metadata": {"name": name, "namespace": namespace,
                              "resourceVersion": body["metadata"]["resourceVersion"]},
                 "status": {"evacuationGate": wanted, "evacuationGateSince": now_rfc3339()}}
        client.CustomObjectsApi(_client()).patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, namespace, "darkclusters", name, apply,
            field_manager=EVACUATION_FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml",
            _request_timeout=REQUEST_TIMEOUT,
        )

    retries.call(once, what=f"evacuation gate {wanted} of DarkCluster {namespace}/{name}")


def set_transplanted_replicas(*, namespace: str, name: str, replicas: int) -> bool:
    """Hold a DarkCluster's ``status.transplantedReplicas`` at ``replicas``; True when it wrote.

    A forced server-side apply of that one field under :data:`TRANSPLANT_FIELD_MANAGER`,
    made only when the field differs (0 and absent are the same). Nothing else of the
    DarkCluster changes hands (not its spec, which its owner or a GitOps tool keeps).
    Raises :class:`ApiException` 404 when the DarkCluster does not exist.
    """
    body = read_custom(plural="darkclusters", namespace=namespace, name=name)
    if body is None:
        raise ApiException(status=404, reason=f"DarkCluster {namespace}/{name} not found")
    if int((body.get("status") or {}).get("transplantedReplicas") or 0) == replicas:
        return False
    apply = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "DarkCluster",
             "metadata": {"name": name, "namespace": namespace},
             "status": {"transplantedReplicas": replicas}}
    client.CustomObjectsApi(_client()).patch_namespaced_custom_object_status(
        API_GROUP, API_VERSION, namespace, "darkclusters", name, apply,
        field_manager=TRANSPLANT_FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml",
        _request_timeout=REQUEST_TIMEOUT,
    )
    return True


def list_horizontal_pod_autoscalers(*, namespace: str) -> list[dict[str, Any]]:
    """Every HorizontalPodAutoscaler (autoscaling/v2) of a namespace."""
    items = client.AutoscalingV2Api(_client()).list_namespaced_horizontal_pod_autoscaler(
        namespace, _request_timeout=REQUEST_TIMEOUT).items
    return [_dict(h) for h in items]


def set_autoscaler_min_replicas(*, namespace: str, name: str, min_replicas: int, uid: str) -> None:
    """Set a HorizontalPodAutoscaler's minReplicas (only if it still has this uid: a JSON patch with a test)."""
    client.AutoscalingV2Api(_client()).patch_namespaced_horizontal_pod_autoscaler(
        name, namespace,
        [{"op": "test", "path": "/metadata/uid", "value": uid},
         {"op": "add", "path": "/spec/minReplicas", "value": min_replicas}],
        _content_type="application/json-patch+json", _request_timeout=REQUEST_TIMEOUT,
    )


def list_deployments(*, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
    """Deployments of a namespace matching a label selector (plain dicts, page by page: :func:`_paged`)."""
    return _paged(client.AppsV1Api(_client()).list_namespaced_deployment, namespace, label_selector=label_selector)


def list_replicasets(*, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
    """ReplicaSets of a namespace matching a label selector (plain dicts, page by page: :func:`_paged`)."""
    return _paged(client.AppsV1Api(_client()).list_namespaced_replica_set, namespace, label_selector=label_selector)


def list_custom(*, plural: str, namespace: str) -> list[dict[str, Any]]:
    """Every regionshift custom resource of one kind in a namespace (page by page: :func:`_paged`)."""
    return _paged(client.CustomObjectsApi(_client()).list_namespaced_custom_object,
                  API_GROUP, API_VERSION, namespace, plural)


def create_custom(*, plural: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """Create a regionshift custom resource; None if one of that name exists already."""
    try:
        return client.CustomObjectsApi(_client()).create_namespaced_custom_object(  # type: ignore[no-any-return]
            API_GROUP, API_VERSION, body["metadata"]["namespace"], plural, body, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 409:
            return None
        raise


def read_configmap_data(*, namespace: str, name: str) -> dict[str, str] | None:
    """A ConfigMap's binaryData, or None if it does not exist."""
    try:
        cm = client.CoreV1Api(_client()).read_namespaced_config_map(name, namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(cm.binary_data or {})


def write_configmap(*, body: dict[str, Any]) -> None:
    """Create a ConfigMap, or replace it if it exists."""
    core = client.CoreV1Api(_client())
    meta = body["metadata"]
    try:
        core.create_namespaced_config_map(meta["namespace"], body, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_config_map(meta["name"], meta["namespace"], body, _request_timeout=REQUEST_TIMEOUT)


def read_secret_value(*, namespace: str, name: str, key: str, opt_in_label: str | None = None) -> str:
    """One key of a Secret, decoded; with ``opt_in_label``, only from a Secret labelled ``<label>: "true"``.

    A Secret without the label raises :class:`~regionshift.errors.TokenSecretNotOptedIn`, and
    its data is never decoded.
    """
    secret = client.CoreV1Api(_client()).read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT)
    if opt_in_label is not None and (secret.metadata.labels or {}).get(opt_in_label) != "true":
        raise TokenSecretNotOptedIn(
            f"the Secret {namespace}/{name} does not carry the label {opt_in_label}: \"true\"; the operator "
            "sends a token only from a Secret whose owner opted in, so nothing was sent (label it, or name another)")
    if key not in (secret.data or {}):
        raise KeyError(f"the Secret {namespace}/{name} has no key {key!r}")
    return base64.b64decode(secret.data[key]).decode()


def patch_custom(*, plural: str, namespace: str, name: str, patch: dict[str, Any], uid: str | None = None) -> dict[str, Any]:
    """Merge-patch a regionshift custom resource; with ``uid``, only that very object (409 otherwise)."""
    if uid is not None:
        patch = {**patch, "metadata": {**patch.get("metadata", {}), "uid": uid}}
    return client.CustomObjectsApi(_client()).patch_namespaced_custom_object(  # type: ignore[no-any-return]
        API_GROUP, API_VERSION, namespace, plural, name, patch, _request_timeout=REQUEST_TIMEOUT
    )


def delete_custom(*, plural: str, namespace: str, name: str, uid: str) -> bool:
    """Delete one regionshift custom resource if it is still the object ``uid``; False if gone."""
    try:
        client.CustomObjectsApi(_client()).delete_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, plural, name, body=client.V1DeleteOptions(preconditions={"uid": uid}),
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


WATCH_SECONDS = 300
"""A watch request asks the API server to end it after this long (then it is made again)."""
WATCH_RETRY_SECONDS = (1.0, 30.0)
"""After a failed LIST or watch: 1 s, doubling up to 30 s."""
_WATCHED = {
    "pods": lambda: client.CoreV1Api(_client()).list_namespaced_pod,
    "deployments": lambda: client.AppsV1Api(_client()).list_namespaced_deployment,
}
log = logging.getLogger(__name__)


def _message(exc: ApiException) -> str:
    """The API server's own words for a refusal (``message`` of its Status), or the HTTP reason."""
    try:
        return str(json.loads(exc.body).get("message") or exc.reason) if exc.body else str(exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


class ObjectWatch:
    """List, then watch, the pods or Deployments of one namespace that match a label selector, on the calling thread.

    :meth:`run` calls ``on_event(type, object)`` for every object of the listing (type
    None), then ``on_listed()`` if given, then ``on_event`` for every watch event (``ADDED``, ``MODIFIED``, ``DELETED``), with the
    object as plain dicts parsed from the JSON line by line: one small ``json.loads`` per
    event, nothing built on the operator's event loop. It follows the stream from the
    listing's resourceVersion, with bookmarks; when the API server no longer has that
    version (410 Gone) it lists again and reports the objects that went meanwhile as
    ``DELETED``; after any other failure it waits (:data:`WATCH_RETRY_SECONDS`) and goes on
    from where it was. It returns once :meth:`stop` is called (from any thread), which
    also unblocks a read in progress. An exception of ``on_event`` is logged, and the
    watch goes on.
    """

    def __init__(self, *, plural: str, namespace: str, label_selector: str,
                 on_event: Callable[[str | None, dict[str, Any]], None],
                 on_listed: Callable[[], None] | None = None) -> None:
        self.plural, self.namespace, self.label_selector = plural, namespace, label_selector
        self._on_event = on_event
        self._on_listed = on_listed
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._known: dict[str, dict[str, Any]] = {}
        """name → the object's metadata as last seen (for the DELETED events a new listing finds)."""

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """End :meth:`run` soon: at once if it waits, at the next byte or the shutdown of its stream if it reads."""
        self._stopping.set()
        with self._lock:
            if self._response is not None:
                try:
                    self._response.shutdown()
                except (AttributeError, OSError):  # no socket to shut down (any more)
                    pass

    def _emit(self, type_: str | None, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        if type_ == "DELETED":
            self._known.pop(name, None)
        else:
            self._known[name] = {"metadata": {k: meta.get(k) for k in ("name", "namespace", "labels", "uid")}}
        try:
            self._on_event(type_, obj)
        except Exception:  # a bug in a handler: say so, and keep watching
            log.exception("handling a %s event of %s %s/%s failed", type_ or "listed", self.plural, self.namespace, name)

    def _relist(self) -> str:
        items, version = _listing(_WATCHED[self.plural](), self.namespace, label_selector=self.label_selector)
        before, listed = dict(self._known), set()
        for item in items:
            listed.add((item.get("metadata") or {}).get("name", ""))
            self._emit(None, item)
        for name, stub in before.items():
            if name not in listed:
                self._emit("DELETED", stub)
        if self._on_listed is not None:
            try:
                self._on_listed()
            except Exception:  # a bug in a handler: say so, and keep watching
                log.exception("handling the listing of %s %s failed", self.plural, self.namespace)
        return version

    def _follow(self, version: str) -> str | None:
        """Follow the stream from ``version``; the last version seen, or None when the watch must list again."""
        response = _WATCHED[self.plural]()(
            self.namespace, label_selector=self.label_selector, watch=True, resource_version=version,
            allow_watch_bookmarks=True, timeout_seconds=WATCH_SECONDS,
            _request_timeout=(REQUEST_TIMEOUT[0], WATCH_SECONDS + 30.0), _preload_content=False)
        with self._lock:
            if self._stopping.is_set():
                response.release_conn()
                return version
            self._response = response
        try:
            for line in iter_resp_lines(response):
                if self._stopping.is_set():
                    break
                event = json.loads(line)
                type_, obj = event.get("type"), event.get("object") or {}
                if type_ == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if type_ != "BOOKMARK":
                    self._emit(type_, obj)
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        return version

    def run(self) -> None:
        """List and watch until :meth:`stop` (blocking; run it in a thread of its own)."""
        version: str | None = None
        delay = WATCH_RETRY_SECONDS[0]
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._relist()
                version = self._follow(version)
                delay = WATCH_RETRY_SECONDS[0]
            except ApiException as exc:
                if exc.status == 410:
                    version = None
                    continue
                failed, level = f"HTTP {exc.status} {exc.reason}: {_message(exc)}", (
                    logging.WARNING if exc.status in (401, 403, 404) else logging.INFO)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                failed, level = f"{type(exc).__name__}: {exc}", logging.INFO
            else:
                continue
            if self._stopping.is_set():
                break
            log.log(level, "watching %s in %s (%s) failed: %s; again in %.0f s", self.plural, self.namespace,
                    self.label_selector, failed, delay)
            self._stopping.wait(delay)
            delay = min(delay * 2, WATCH_RETRY_SECONDS[1])
