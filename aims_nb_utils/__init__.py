"""AIMS Data Quality Platform: the one place where the pipeline's logic lives.

Importing the package is cheap on purpose: Great Expectations is imported only by the modules that
validate, so notebooks that do not validate start fast.
"""

import os

# GX must never phone home from a lake pipeline; it reads this at import time.
os.environ["GX_ANALYTICS_ENABLED"] = "False"

__version__ = "0.1.0"
