"""``taskwatcher serve``: the dashboard and the HTTP JSON API (the ``web`` extra: Starlette, uvicorn).

Nothing here is imported by the other commands: ``serve`` alone loads it.
"""
