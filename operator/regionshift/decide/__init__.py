"""Pure decisions over plain data: what to do, never how to do it.

Detection, forecasts, sizing, the shadow Deployment and the gate. Nothing here talks to the
API server or Prometheus, and nothing here imports :mod:`regionshift.adapters`: every
function is unit-tested without a cluster.
"""
