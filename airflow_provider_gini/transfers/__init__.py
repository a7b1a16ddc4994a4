"""Transfers: what a pull stored, moved where analysts query it (transfers/gini_to_sql.py)."""
