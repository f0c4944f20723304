# Runs at the start of every kernel that uses this profile. In the checkout's own environment
# (.venv) the kernel imports `utils` from this checkout, whatever else that environment has
# installed (another checkout's editable install, say), so a test run checks its own code.
# Other environments (the Colab-parity one) import what they installed, as Colab does.
import os as _os
import sys as _sys

_root = _os.path.abspath(_os.path.join(_os.path.dirname(__file__), "..", "..", "..", ".."))
if _os.path.realpath(_sys.prefix) == _os.path.realpath(_os.path.join(_root, ".venv")):
    if _root not in _sys.path:
        _sys.path.insert(0, _root)
del _os, _sys, _root
