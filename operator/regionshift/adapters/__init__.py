"""Everything that talks to the outside: the Kubernetes API, Prometheus, the history store.

The controllers call these; the decisions in :mod:`regionshift.decide` never do.
"""
