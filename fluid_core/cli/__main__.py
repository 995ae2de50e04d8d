"""``python -m fluid_core.cli`` runs ``fluidv``."""

import sys

from fluid_core.cli import main

sys.exit(main())
