"""fairseq_focus: the Focus layer (adaptive order-2 IIR filters + chunked attention) for fairseq.

``--user-dir fairseq_focus`` imports this package; fairseq auto-imports only ``models/`` and
``tasks/``. Everything that registers is imported here too, so that ``import fairseq_focus`` alone
registers it all, and ``criterions/`` and ``encoders/`` (the ``focus_bytes`` BPE), which fairseq does
not auto-import, are registered at all.
"""
from . import criterions  # noqa: F401
from .encoders import focus_bytes as _focus_bytes  # noqa: F401
from .models import focus_classifier as _focus_classifier  # noqa: F401
from .models import focus_lm as _focus_lm  # noqa: F401
from .models import focus_recall as _focus_recall  # noqa: F401
from .models import peer_lm as _peer_lm  # noqa: F401
from .tasks import associative_recall as _associative_recall_task  # noqa: F401
from .tasks import focus_lm as _focus_lm_task  # noqa: F401
from .tasks import mqar as _mqar_task  # noqa: F401
from .tasks import pixel_sequence_classification as _pixel_task  # noqa: F401
