from marshmallow import Schema, fields, validate

from api.resources.common import EventSchema
from api.resources.typed import Computed
from core.models import ROLES
from core.users import MAX_NAME_LENGTH, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

_ROLE = validate.OneOf(ROLES)
_CREW = {"description": "crew code: required for role crew, refused for the other roles"}
_PASSWORD = {
    "description": f"{MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters, not the e-mail address; never returned"
}


class UserArgs(Schema):
    role = fields.String(validate=_ROLE)
    active = fields.Boolean(
        metadata={"description": "only active (true) or deactivated (false) logins"}
    )


class UserSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    crew = Computed(
        lambda u: u.crew.code if u.crew else None,
        fields.String(allow_none=True),
        metadata={"description": "crew code; null for the roles other than crew"},
    )
    active = fields.Boolean()
    created_at = fields.DateTime()


class UserDetailSchema(UserSchema):
    timeline = fields.List(
        fields.Nested(EventSchema), metadata={"description": "the audit: who changed what, when"}
    )


class NewUserSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(1, 320))
    name = fields.String(required=True, validate=validate.Length(1, MAX_NAME_LENGTH))
    role = fields.String(required=True, validate=_ROLE)
    crew = fields.String(load_default=None, allow_none=True, metadata=_CREW)
    password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, MAX_PASSWORD_LENGTH),
        metadata=_PASSWORD,
    )


class UserChangeSchema(Schema):
    """Only what is sent changes; a crew login's crew stays unless another is sent."""

    role = fields.String(validate=_ROLE)
    crew = fields.String(allow_none=True, metadata=_CREW)
    name = fields.String(validate=validate.Length(1, MAX_NAME_LENGTH))


class PasswordSchema(Schema):
    password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, MAX_PASSWORD_LENGTH),
        metadata=_PASSWORD,
    )


class AccountNoteSchema(Schema):
    note = fields.String(
        load_default=None,
        validate=validate.Length(max=2000),
        metadata={"description": "why, for the account's timeline"},
    )
