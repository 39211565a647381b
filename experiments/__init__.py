"""One runnable script per scenario of the integration test plan, sharing `experiments/runner.py`.

Importing the package checks first that this Python has the project's dependencies (stdlib only),
so a Ray job whose runtime env lacks them stops with one line naming them, not a traceback. The
scripts import the package before anything else for that reason.

How a script finds the project: `python -m experiments.coherency` from the checkout imports it as
a package; `python experiments/coherency.py` finds `experiments`, `cluster`, `analysis` through
the editable install (`pip install -e .`, done by scripts/bootstrap_venv.sh and the image), or
through PYTHONPATH, which `ray job submit --working-dir .` sets to the uploaded checkout first.
No script edits `sys.path`.
"""

from cluster.deps import require_dependencies

require_dependencies()
