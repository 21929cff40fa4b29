"""Database: typed models, engine and transaction helpers."""
