"""Model sources: the built-in zoo and the user's own code."""
