"""Persistence for mmsc: database models, repositories and the payload store.

Filled in by the store-and-forward work (issue: MM1 store-and-forward core).
"""
