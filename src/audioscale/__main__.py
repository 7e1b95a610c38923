import sys

from audioscale.cli import main

sys.exit(main())
