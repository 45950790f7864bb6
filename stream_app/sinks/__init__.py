"""Where recommendations and shared item statistics go."""
