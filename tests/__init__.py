"""The test suite.

Hermetic state: everything the tests start — the apps ``chat.app`` and ``runner.app`` build at
import, and every service process (which inherits this environment) — keeps its state in a
temporary ``XDG_STATE_HOME`` unless a test sets ``STATE_DIR``; never in ``~/.local/state``,
which other checkouts on the machine share.
"""

import atexit
import os
import shutil
import tempfile

_state_home = tempfile.mkdtemp(prefix="soc-tests-state-")
os.environ["XDG_STATE_HOME"] = _state_home
atexit.register(shutil.rmtree, _state_home, ignore_errors=True)
