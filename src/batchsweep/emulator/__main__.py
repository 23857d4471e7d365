"""`python -m batchsweep.emulator serve|play|push`: see `batchsweep.emulator.server`."""

import sys

from batchsweep.emulator.server import main

sys.exit(main())
