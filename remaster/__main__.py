import sys

from .headless.cli import main

sys.exit(main())
