"""Data the tasks use: byte corpora, IDX files and pixel splits, recall generators (no fairseq import)."""
