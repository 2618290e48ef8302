"""Per-stream state for decoding and streaming, kept in fairseq's ``incremental_state``.

Every module that remembers something between calls (the hypernetwork's input history and current
bin, an IIR/EMA filter's recursion state, the attention's KV cache of the current chunk) derives
from :class:`StreamingModule`: its tensors live in the ``incremental_state`` dict under the module's
own key (fairseq's :class:`FairseqIncrementalState` helpers), batch first, and
:meth:`reorder_incremental_state` selects them along the batch for beam search — fairseq's
``reorder_incremental_state_scripting`` calls it on every module of the decoder.
"""
from typing import Dict, Optional

from fairseq.incremental_decoding_utils import with_incremental_state
from torch import Tensor, nn

Cache = Dict[str, Optional[Tensor]]
IncrementalState = Dict[str, Cache]


@with_incremental_state
class StreamingModule(nn.Module):
    def get_cache(self, incremental_state: IncrementalState) -> Cache:
        return self.get_incremental_state(incremental_state, "cache") or {}

    def set_cache(self, incremental_state: IncrementalState, cache: Cache) -> None:
        self.set_incremental_state(incremental_state, "cache", cache)

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        """Beam search: keep the streams ``new_order`` names (index_select on the batch axis)."""
        cache = self.get_incremental_state(incremental_state, "cache")
        if cache:
            self.set_cache(incremental_state, {
                name: None if value is None else value.index_select(0, new_order) for name, value in cache.items()
            })
