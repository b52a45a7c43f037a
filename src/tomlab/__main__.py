import sys

from tomlab.cli import main

sys.exit(main())
