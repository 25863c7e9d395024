"""Analysis: comparisons between runs and the selection framework's scores."""
