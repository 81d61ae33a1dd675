"""Engines and database URLs."""

from __future__ import annotations

from sneakers23.db.engine import database_identity


def test_a_database_is_the_same_whatever_the_driver_user_or_password():
    one = database_identity("postgresql+psycopg://shop:secret@db.internal:5432/sneakers23")
    assert database_identity("postgresql://other@db.internal:5432/sneakers23") == one
    assert database_identity("postgresql://shop:secret@db.internal:5432/other") != one
    assert database_identity("postgresql://shop:secret@db.replica:5432/sneakers23") != one
    assert "secret" not in one
    assert database_identity("sqlite:////srv/a.db") != database_identity("sqlite:////srv/b.db")
