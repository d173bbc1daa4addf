"""smoacs-bench: methods."""
