# Runs at the start of every kernel that uses this profile (make test / execute / bench):
# no notebook may reach the network in CI. See tests/offline.py.
import importlib.util as _ilu
import os as _os

_path = _os.path.join(_os.path.dirname(__file__), "..", "..", "..", "offline.py")
_spec = _ilu.spec_from_file_location("_course_offline", _os.path.abspath(_path))
_mod = _ilu.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
_mod.block_network()
del _ilu, _os, _path, _spec, _mod
