import sys

from tomlab.cli.main import main

sys.exit(main())
