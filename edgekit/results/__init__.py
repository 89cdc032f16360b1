"""results.json read back: validated, loaded, and described (which way each metric is better).
Written by edgekit.report.results; read by report, check, compare, verify and the API."""
