"""smoacs-bench: data."""
