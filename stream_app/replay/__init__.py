"""Feed historical event logs through the same topics and code path as live traffic."""
