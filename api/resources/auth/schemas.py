from marshmallow import Schema, fields, validate

from api.resources.typed import Computed


class LoginSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(1, 320))
    password = fields.String(required=True, load_only=True, validate=validate.Length(1, 1024))


class TokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


class MeSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    crew_code = Computed(
        lambda u: u.crew.code if u.crew else None,
        fields.String(allow_none=True),
        metadata={"description": "the crew of a crew login; null for the other roles"},
    )


class RevokedSchema(Schema):
    revoked = fields.Integer(
        metadata={"description": "how many tokens were revoked, this one included"}
    )
