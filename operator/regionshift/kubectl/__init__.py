"""``kubectl regionshift``: the kubectl plugin (a console script ``kubectl-regionshift``).

Like kubectl-argo-rollouts, it is a plain program on ``PATH`` that kubectl finds by name.
It only reads a RegionFailover's status and edits its ``spec.evacuate``; it never decides
anything itself (the operator's pure decisions stay the only decision path).

* :mod:`~regionshift.kubectl.render`: the ``status`` and ``plan`` text, pure functions over
  a RegionFailover as the API server returns it;
* :mod:`~regionshift.kubectl.button`: the ``evacuate`` / ``failback`` merge patch of
  ``spec.evacuate`` and the GitOps snippet, pure;
* :mod:`~regionshift.kubectl.main`: arguments, the kubeconfig, the API calls.
"""
