"""Report: pages, charts and exports rendered from results."""
