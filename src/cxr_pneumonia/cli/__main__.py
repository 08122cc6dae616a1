"""``python -m cxr_pneumonia.cli``: the same as the ``cxr-pneumonia`` script."""

import sys

from cxr_pneumonia.cli.app import main

sys.exit(main())
