import sys

from mtlab.cli import main

sys.exit(main())
