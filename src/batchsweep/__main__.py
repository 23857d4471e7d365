import sys

from batchsweep.cli import main

sys.exit(main())
