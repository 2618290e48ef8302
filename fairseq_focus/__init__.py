"""fairseq_focus: the Focus layer (adaptive order-2 IIR filters + chunked attention) for fairseq.

``--user-dir fairseq_focus`` imports this package; fairseq auto-imports ``models/`` and ``tasks/``,
and importing them here too makes ``import fairseq_focus`` register everything on its own.
``encoders/`` (the ``focus_bytes`` BPE) is not auto-imported by fairseq, so it is imported here.
"""
from . import models, tasks  # noqa: F401
from .encoders import focus_bytes as _focus_bytes  # noqa: F401
from .models import focus_lm as _focus_lm  # noqa: F401
from .tasks import focus_lm as _focus_lm_task  # noqa: F401
from . import criterions  # noqa: F401  (not auto-imported by --user-dir)
from .models import focus_classifier as _focus_classifier  # noqa: F401
from .tasks import pixel_sequence_classification as _pixel_task  # noqa: F401
