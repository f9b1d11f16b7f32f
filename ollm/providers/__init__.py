"""Providers: how ollm talks to a model server."""
