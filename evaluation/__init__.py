"""smoacs-bench: evaluation."""
