"""The checkpoint service (`cpf serve`, `cpf keys`): its one home. Map: README.md here.

HTTP: app.py, routes.py, auth.py, guard.py, openapi.py, delivery.py, commands.py.
The checkpoint API (no HTTP, no SQL): api.py composed of keys.py, checkpoints.py,
agents.py, webhooks.py, ratelimit.py over common.py. Its SQL and tables: store/.
"""
