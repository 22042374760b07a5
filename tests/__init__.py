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

PREFIX = "soc-tests-state-"

# A helper process started by a test (python -m tests.fake_ollama) inherits the session's.
if not os.path.basename(os.environ.get("XDG_STATE_HOME", "")).startswith(PREFIX):
    _state_home = tempfile.mkdtemp(prefix=PREFIX)
    os.environ["XDG_STATE_HOME"] = _state_home
    atexit.register(shutil.rmtree, _state_home, ignore_errors=True)
