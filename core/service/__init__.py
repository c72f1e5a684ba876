"""`cpf serve`: the SnapState checkpoint HTTP API over the cpf store.

app.py (ASGI app, lifespan, middleware), routes.py (handlers), auth.py (bearer keys),
ratelimit.py (per key), webhooks.py (signing and the delivery worker), openapi.py
(the served OpenAPI document), commands.py (`cpf serve`, `cpf keys`). No SQL here:
everything goes through `core.checkpoints`.
"""
