"""``python -m psld`` (also ``accelerate launch -m psld evaluate ...``): the ``psld`` command."""

import sys

from psld.cli import main

sys.exit(main())
