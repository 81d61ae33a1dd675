"""Sneakers23: a real-time store for sneaker drops."""
