"""Data the tasks use: byte corpora and their codec, IDX files and pixel splits, recall generators.

The generators, file formats and preparation CLIs import no fairseq at module level, so they run
without it; the exceptions are ``pixel_dataset`` (a ``FairseqDataset``) and
``byte_codec.byte_dictionary`` (builds a fairseq ``Dictionary``, importing fairseq when called).
"""
