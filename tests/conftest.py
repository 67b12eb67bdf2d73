from __future__ import annotations

import os

# Jupyter's tooling warns (and our warnings are errors) unless it is told to use the
# platform's standard directories.
os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
