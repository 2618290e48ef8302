"""Using a trained byte-level ``focus_lm``: the hub (``hub.FocusLMHub``) and the streaming scorer
(``stream_scoring``), both feeding ``FocusDecoder.forward_stream`` with carried state."""
