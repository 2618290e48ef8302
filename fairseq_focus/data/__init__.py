"""Dataset readers the tasks use: IDX files and prepared pixel-classification splits."""
