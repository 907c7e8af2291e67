from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import select

from api.auth import current_actor, require
from api.db import session
from api.errors import abort
from api.resources.common import Blueprint
from core.auth import create_api_key, revoke_api_key
from core.models import ApiKey

blp = Blueprint(
    "api_keys",
    __name__,
    url_prefix="/api-keys",
    description="Open311 client applications and their keys.",
)


class ApiKeySchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(1, 255))
    active = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class NewApiKeySchema(ApiKeySchema):
    api_key = fields.String(
        dump_only=True, metadata={"description": "shown once; only its hash is stored"}
    )


@blp.route("")
@require("admin")
@blp.response(200, ApiKeySchema(many=True))
@blp.doc(operationId="listApiKeys")
def list_keys() -> Any:
    return session().scalars(select(ApiKey).order_by(ApiKey.id)).all()


@blp.route("", methods=["POST"])
@require("admin")
@blp.arguments(ApiKeySchema)
@blp.response(201, NewApiKeySchema)
@blp.doc(operationId="createApiKey")
def create_key(data: dict[str, Any]) -> Any:
    s = session()
    row, key = create_api_key(s, data["name"], actor=current_actor())
    s.commit()
    return {
        "id": row.id,
        "name": row.name,
        "active": row.active,
        "created_at": row.created_at,
        "api_key": key,
    }


@blp.route("/<int:key_id>", methods=["DELETE"])
@require("admin")
@blp.response(204)
@blp.error(404)
@blp.doc(operationId="revokeApiKey")
def revoke_key(key_id: int) -> None:
    """The app can no longer submit reports, and its webhooks are switched off: calls
    still waiting in the outbox are given up, not sent. Revoking again changes nothing."""
    s = session()
    row = s.get(ApiKey, key_id)
    if row is None:
        abort(404, message=f"api key {key_id} not found")
    revoke_api_key(s, row, actor=current_actor())
    s.commit()
