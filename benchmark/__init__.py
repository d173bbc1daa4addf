"""smoacs-bench: benchmark."""
