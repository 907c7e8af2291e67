"""The /api/v1 resources, registered from one list."""

from __future__ import annotations

from flask_smorest import Api


def register_resources(api: Api) -> None:
    from api.resources.addresses.routes import blp as addresses
    from api.resources.api_keys.routes import blp as api_keys
    from api.resources.app_config.routes import blp as app_config
    from api.resources.auth.routes import blp as auth
    from api.resources.citistat.routes import blp as citistat
    from api.resources.crew.routes import blp as crew_phone
    from api.resources.crews.routes import blp as crews
    from api.resources.depots.routes import blp as depots
    from api.resources.districts.routes import blp as districts
    from api.resources.plans.routes import blp as plans
    from api.resources.requests.routes import blp as requests
    from api.resources.reviews.routes import blp as reviews
    from api.resources.service_area.routes import blp as service_area
    from api.resources.service_types.routes import blp as service_types
    from api.resources.shifts.routes import blp as shifts
    from api.resources.typed import install as document_typed_fields
    from api.resources.users.routes import blp as users
    from api.resources.webhooks.routes import blp as webhooks
    from api.resources.work_orders.routes import blp as work_orders

    # Before the first blueprint: apispec documents each schema as it is registered.
    document_typed_fields(api)
    for blp in (
        auth,
        service_types,
        crews,
        depots,
        districts,
        service_area,
        requests,
        work_orders,
        plans,
        crew_phone,
        api_keys,
        users,
        reviews,
        webhooks,
        citistat,
        shifts,
        app_config,
        addresses,
    ):
        api.register_blueprint(blp, url_prefix=f"/api/v1{blp.url_prefix or ''}")
