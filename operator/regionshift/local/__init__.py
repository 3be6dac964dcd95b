"""What only local regions and drills need: the Go control plane, synthetic history, the demo.

Installed with the ``local`` extra (``pip install 'regionshift[local]'``); the operator itself
never imports this package.
"""
