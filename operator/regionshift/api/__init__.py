"""The API of regionshift: the custom resources as pydantic models, and the CRDs made from them.

The models are the single source of truth; :mod:`regionshift.api.crdgen` turns them into the
YAML in ``crds/`` and :mod:`regionshift.api.conditions` builds the status conditions every
resource reports.
"""
