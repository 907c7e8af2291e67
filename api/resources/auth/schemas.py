from marshmallow import Schema, fields, validate


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
    crew_code = fields.Function(lambda u: u.crew.code if u.crew else None)


class RevokedSchema(Schema):
    revoked = fields.Integer(metadata={"description": "how many tokens were revoked, this one included"})
