"""dmtl.core: tasks, partial labels, relatedness, losses, objective, heads, metrics (pure PyTorch)."""
