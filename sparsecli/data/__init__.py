"""Data sources: built-in digits, arrays from .npz, synthetic data for timing-only runs."""
