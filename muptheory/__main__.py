import sys

from muptheory.cli import main

sys.exit(main())
