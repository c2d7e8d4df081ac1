"""Says which Python runs it (a warm start must run on the step's environment's own)."""

import sys

print("seen", tuple(sys.version_info[:2]), __name__)
