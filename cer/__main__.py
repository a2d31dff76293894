"""Allow ``python -m cer``."""

import sys

from cer.cli import main

sys.exit(main())
