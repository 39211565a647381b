"""One runnable script per scenario of the integration test plan, sharing `experiments/runner.py`.

Importing the package checks first that this Python has the project's dependencies (stdlib only),
so a Ray job whose runtime env lacks them stops with one line naming them, not a traceback. The
scripts import the package before anything else for that reason.
"""

from cluster.deps import require_dependencies

require_dependencies()
