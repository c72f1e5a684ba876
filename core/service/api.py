"""The checkpoint API: one object, `CheckpointService`, for everything that calls it.

Its callers are the HTTP handlers (routes.py), the webhook worker (delivery.py),
`cpf keys` (commands.py) and the TUI's Checkpoints screen. It holds no logic: each
method is served by one area, listed below, over one shared `Context` (the store,
the options, the enqueue hook):

    keys.py         create_key, list_keys, revoke_key, authenticate
    checkpoints.py  save, get, resume, replay, list_workflows, delete_workflow, sweep
    agents.py       register_agent, get_agent, patch_agent, delete_agent, list_agents
    webhooks.py     register_webhook, list_webhooks, get_webhook, delete_webhook,
                    webhook_deliveries; the outbox: claim_deliveries, finish_delivery,
                    seconds_to_next_delivery
    ratelimit.py    rate_limit
"""

from __future__ import annotations

from typing import Any

from core.service.agents import AgentsService
from core.service.checkpoints import CheckpointsService
from core.service.common import Context, Options
from core.service.keys import KeysService
from core.service.ratelimit import RateLimits
from core.service.webhooks import WebhooksService


class _Served:
    """A method of the facade served by one of its areas: `save = _Served("checkpoints")`
    is `self.checkpoints.save`."""

    def __init__(self, area: str) -> None:
        self.area = area
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(getattr(obj, self.area), self.name)


class _Shared:
    """An attribute of the shared `Context` (`svc.ss`, `svc.options`, `svc.on_enqueue`):
    setting it on the facade sets it for every area."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj.ctx, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj.ctx, self.name, value)


class CheckpointService:
    """The checkpoint API over one store."""

    ss = _Shared()  # the service's store (core.service.store.service_store.ServiceStore)
    options = _Shared()  # Options
    # Called (without arguments) after a commit that enqueued webhook deliveries.
    on_enqueue = _Shared()

    def __init__(self, store: Any = None, options: Options | None = None) -> None:
        from core.service.store.service_store import PoolConfig, ServiceStore
        from core.store.store import open_store

        options = options or Options()
        pool = PoolConfig(size=options.pool_size, timeout=options.pool_timeout)
        self.ctx = Context(ServiceStore(store or open_store(), pool=pool), options)
        self.keys = KeysService(self.ctx)
        self.checkpoints = CheckpointsService(self.ctx)
        self.agents = AgentsService(self.ctx)
        self.webhooks = WebhooksService(self.ctx)
        self.rates = RateLimits(self.ctx)

    create_key = _Served("keys")
    list_keys = _Served("keys")
    revoke_key = _Served("keys")
    authenticate = _Served("keys")

    save = _Served("checkpoints")
    one_trip_save = _Served("checkpoints")
    save_keyed = _Served("checkpoints")
    save_keyed_async = _Served("checkpoints")
    async_save = _Served("checkpoints")
    close_async_saves = _Served("checkpoints")
    save_general = _Served("checkpoints")
    get = _Served("checkpoints")
    resume = _Served("checkpoints")
    resume_keyed = _Served("checkpoints")
    replay = _Served("checkpoints")
    list_workflows = _Served("checkpoints")
    delete_workflow = _Served("checkpoints")
    sweep = _Served("checkpoints")

    register_agent = _Served("agents")
    get_agent = _Served("agents")
    patch_agent = _Served("agents")
    delete_agent = _Served("agents")
    list_agents = _Served("agents")

    register_webhook = _Served("webhooks")
    list_webhooks = _Served("webhooks")
    get_webhook = _Served("webhooks")
    delete_webhook = _Served("webhooks")
    webhook_deliveries = _Served("webhooks")
    claim_deliveries = _Served("webhooks")
    finish_delivery = _Served("webhooks")
    seconds_to_next_delivery = _Served("webhooks")

    rate_limit = _Served("rates")


_SERVICE: CheckpointService | None = None


def service(options: Options | None = None) -> CheckpointService:
    """The process-wide checkpoint service over `core.store.store.open_store()`."""
    global _SERVICE
    from core.store.store import open_store

    store = open_store()
    if _SERVICE is None or _SERVICE.ss.store is not store:
        _SERVICE = CheckpointService(store, options)
    elif options is not None:
        _SERVICE.options = options
    return _SERVICE


__all__ = ["CheckpointService", "Options", "service"]
