"""`cpf serve`: the SnapState checkpoint HTTP API over the cpf store.

app.py (ASGI app, lifespan, middleware), routes.py (handlers), auth.py (bearer keys),
ratelimit.py (per key), delivery.py (signing and the webhook delivery worker), openapi.py
(the served OpenAPI document), commands.py (`cpf serve`, `cpf keys`). No SQL here:
everything goes through `core.service.api`.
"""
