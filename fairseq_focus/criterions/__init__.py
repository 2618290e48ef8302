"""Criterions; fairseq does not auto-import this folder, so ``fairseq_focus/__init__.py`` imports it."""
from . import focus_classification  # noqa: F401
from . import labelled_cross_entropy  # noqa: F401
