"""Results: the schema and its history, the store and journal, statistics and rubric scores computed on load."""
