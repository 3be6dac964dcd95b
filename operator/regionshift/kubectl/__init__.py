"""``kubectl regionshift``: the kubectl plugin (a console script ``kubectl-regionshift``).

Like kubectl-argo-rollouts, it is a plain program on ``PATH`` that kubectl finds by name.
It reads RegionFailovers, edits their ``spec.evacuate``, and plans; it has no decision logic
of its own: ``plan`` runs the operator's pure DryRun decision over what it observes now.

* :mod:`~regionshift.kubectl.render`: the ``status`` and ``plan`` text, pure functions;
* :mod:`~regionshift.kubectl.plan`: the plan, the operator's DryRun step
  (:func:`regionshift.decide.evacuation.step`) with ``evacuate: [REGION]``, pure;
* :mod:`~regionshift.kubectl.live`: the observations that step needs, read now with the
  user's credentials (DarkClusters, routes, the peers' capacity from Prometheus);
* :mod:`~regionshift.kubectl.button`: the ``evacuate`` / ``failback`` merge patch of
  ``spec.evacuate`` and the GitOps snippet, pure;
* :mod:`~regionshift.kubectl.main`: arguments, the kubeconfig, the API calls.
"""
