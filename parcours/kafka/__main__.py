"""`python -m parcours.kafka ensure-topics | ping` (see `parcours.kafka.main`)."""

import sys

from parcours.kafka import main

sys.exit(main())
