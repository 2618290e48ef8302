"""What the model configs and named archs share: the stack's settings typed for fairseq's CLI, and
the helper that fills an arch's defaults.

Every setting, its default and its help text is written once, in ``modules/config.py``
(:class:`FocusStackConfig`); :class:`FocusModelConfig` only gives the string options fairseq's
``ChoiceEnum`` type (so ``--help`` lists the choices and argparse refuses others), reading each
field's default and help from there. A model that needs another default says only that.
"""
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterable, Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from ..modules.config import (FILTER_INPUTS, FILTERS, GLOBAL_ATTENTION_DECAYS, GLOBAL_ATTENTIONS, REL_POS_BIASES,
                              THETA_INITS, WIRINGS, FocusStackConfig)
from ..ops.iir import MODES
from ..ops.tv_iir import FORMS
from ..ops.theta import PARAMS


def stack_field(name: str, default: Optional[Any] = None):
    """FocusStackConfig's field ``name`` again — same help text, same default unless one is given."""
    base = FocusStackConfig.__dataclass_fields__[name]
    return field(default=base.default if default is None else default, metadata=dict(base.metadata))


@dataclass
class FocusModelConfig(FocusStackConfig, FairseqDataclass):
    focus_filter: ChoiceEnum(list(FILTERS)) = stack_field("focus_filter")
    iir_mode: ChoiceEnum(list(MODES)) = stack_field("iir_mode")
    filter_input: ChoiceEnum(list(FILTER_INPUTS)) = stack_field("filter_input")
    theta_param: ChoiceEnum(list(PARAMS)) = stack_field("theta_param")
    theta_init: ChoiceEnum(list(THETA_INITS)) = stack_field("theta_init")
    block_wiring: ChoiceEnum(list(WIRINGS)) = stack_field("block_wiring")
    rel_pos_bias: ChoiceEnum(list(REL_POS_BIASES)) = stack_field("rel_pos_bias")
    selective_form: ChoiceEnum(list(FORMS)) = stack_field("selective_form")
    global_attention: ChoiceEnum(list(GLOBAL_ATTENTIONS)) = stack_field("global_attention")
    global_attention_decay: ChoiceEnum(list(GLOBAL_ATTENTION_DECAYS)) = stack_field("global_attention_decay")


def set_default(args, name: str, value) -> None:
    """Give ``args.name`` a value unless the command line (or an earlier arch) set one."""
    if getattr(args, name, None) is None:
        setattr(args, name, value)


def set_defaults(args, values: Dict[str, Any]) -> None:
    """:func:`set_default` for each name -> value of an arch's table."""
    for name, value in values.items():
        set_default(args, name, value)


def fill_defaults(args, config: type, skip: Iterable[str] = ()) -> None:
    """Fill every field of ``config`` an arch left unset with the config's default."""
    for f in fields(config):
        if not f.name.startswith("_") and f.name not in skip:
            set_default(args, f.name, f.default)
