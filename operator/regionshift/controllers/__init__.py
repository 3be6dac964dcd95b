"""The controllers: kopf handlers that read, call a decision, and write.

:mod:`~regionshift.controllers.registry` registers the handlers (importing it is enough);
one module per resource kind does the work, each the single writer of its objects;
:mod:`~regionshift.controllers.operator_settings` holds kopf's settings and login.
"""
