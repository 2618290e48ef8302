"""``python -m fairseq_focus.tools.check_node``: the check's command line (``cli.main``)."""
import sys

from .cli import main

sys.exit(main())
