"""``python -m ntk_lab``: the ``ntk-lab`` command."""
import sys

from ntk_lab.cli import main

sys.exit(main())
