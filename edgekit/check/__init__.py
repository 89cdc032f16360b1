"""`edgekit check`: budgets (recipe schema), baselines, the gate and its output. Light imports only."""
