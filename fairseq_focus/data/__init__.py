"""Data generators and readers that the tasks use (pure numpy/torch, no fairseq import)."""
