"""Further ranking and beyond-accuracy metrics."""
