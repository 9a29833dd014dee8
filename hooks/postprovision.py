"""azd postprovision hook (azure.yaml): see hooks/provisioning.py. azd runs this file with the packages
of hooks/requirements.txt; the project root is put on the path so the package imports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hooks.provisioning import postprovision, run

if __name__ == "__main__":
    sys.exit(run(postprovision, os.environ))
