"""The database: the single source of truth for products, stock and orders."""
