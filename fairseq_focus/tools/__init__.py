"""Command-line tools above the models: ``python -m fairseq_focus.tools.<name>``.

bench (one layer and one training step, timed), bench_decode (recompute vs incremental decoding),
plot_filters (the Θ a checkpoint produces, drawn), score_stream (a subset scored as one stream).
Nothing here registers anything with fairseq, and nothing below imports from here.
"""
