"""fairseq_focus: the Focus layer (adaptive order-2 IIR filters + chunked attention) for fairseq.

``--user-dir fairseq_focus`` imports this package; fairseq auto-imports ``models/`` and ``tasks/``,
and importing them here too makes ``import fairseq_focus`` register everything on its own.
"""
from . import models, tasks  # noqa: F401
from .models import focus_lm as _focus_lm  # noqa: F401
from .tasks import focus_lm as _focus_lm_task  # noqa: F401
from .tasks import associative_recall as _associative_recall_task  # noqa: F401
from .models import focus_recall as _focus_recall  # noqa: F401
