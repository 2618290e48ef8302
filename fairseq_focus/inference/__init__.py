"""Using a trained ``focus_lm``, byte-level or sentencepiece: the hub (``hub.FocusLMHub``) and the
streaming scorer (``stream_scoring``), both feeding ``FocusDecoder.forward_stream`` with carried state."""
