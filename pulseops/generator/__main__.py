"""``python -m pulseops.generator``: see pulseops/generator/command.py."""

import sys

from pulseops.generator.command import main

sys.exit(main())
