from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.resources.typed import JSONValue
from core.models import DATATYPES

CODE = validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$", error="use 1-64 letters, digits, '_', '-' or '.'")


class ValueSchema(Schema):
    key = fields.String(required=True, validate=validate.Length(1, 100))
    name = fields.String(required=True, validate=validate.Length(1, 255))


class AttributeSchema(Schema):
    code = fields.String(required=True, validate=CODE)
    datatype = fields.String(required=True, validate=validate.OneOf(DATATYPES))
    description = fields.String(required=True, validate=validate.Length(1, 1000))
    datatype_description = fields.String(load_default="")
    required = fields.Boolean(load_default=False)
    variable = fields.Boolean(load_default=True)
    order = fields.Integer(load_default=0)
    values = fields.List(fields.Nested(ValueSchema), load_default=list)

    @validates_schema
    def _values(self, data, **kwargs):  # noqa: ANN001, ANN003
        is_list = data["datatype"] in {"singlevaluelist", "multivaluelist"}
        if is_list and not data.get("values"):
            raise ValidationError("list datatypes need at least one value", "values")
        if not is_list and data.get("values"):
            raise ValidationError("only list datatypes take values", "values")
        keys = [v["key"] for v in data.get("values", [])]
        if len(keys) != len(set(keys)):
            raise ValidationError("value keys must be unique", "values")


class ServiceTypeSchema(Schema):
    id = fields.Integer(dump_only=True)
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(1, 255))
    description = fields.String(load_default="")
    agency = fields.String(required=True, validate=validate.Length(1, 255))
    group = fields.String(load_default="")
    keywords = fields.List(fields.String(validate=validate.Length(1, 64)), load_default=list)
    sla_hours = fields.Integer(required=True, validate=validate.Range(min=1, max=24 * 365))
    skill = fields.String(required=True, validate=validate.Length(1, 64))
    minutes_on_site = fields.Integer(required=True, validate=validate.Range(min=1, max=24 * 60))
    base_priority = fields.Integer(load_default=3, validate=validate.Range(1, 5))
    duplicate_radius_m = fields.Integer(load_default=50, validate=validate.Range(0, 1000))
    photo_required = fields.Boolean(load_default=True)
    proof_max_distance_m = fields.Integer(load_default=75, validate=validate.Range(1, 5000))
    auto_verify = fields.Boolean(load_default=True)
    demands = fields.Dict(
        keys=fields.String(validate=validate.Length(1, 64)),
        # Passed through as sent: _demands below checks it (a number, or "attribute:<code>").
        values=JSONValue(
            {"type": "number", "minimum": 0}, {"type": "string", "pattern": "^attribute:"}
        ),
        load_default=dict,
        metadata={
            "description": 'capacity per job and dimension: a number, or "attribute:<code>" of a number attribute'
        },
    )
    active = fields.Boolean(load_default=True)
    attributes = fields.List(fields.Nested(AttributeSchema), load_default=list)

    @validates_schema
    def _demands(self, data, **kwargs):  # noqa: ANN001, ANN003
        numbers = {a["code"] for a in data.get("attributes", []) if a["datatype"] == "number"}
        for dimension, rule in (data.get("demands") or {}).items():
            if isinstance(rule, bool) or not (
                (isinstance(rule, int | float) and rule >= 0)
                or (isinstance(rule, str) and rule.startswith("attribute:"))
            ):
                raise ValidationError(
                    f"{dimension}: a number >= 0 or 'attribute:<code>'", "demands"
                )
            if (
                isinstance(rule, str)
                and "attributes" in data
                and rule.removeprefix("attribute:") not in numbers
            ):
                raise ValidationError(
                    f"{dimension}: {rule!r} is not a number attribute of this type", "demands"
                )

    @validates_schema
    def _unique_codes(self, data, **kwargs):  # noqa: ANN001, ANN003
        codes = [a["code"] for a in data.get("attributes", [])]
        if len(codes) != len(set(codes)):
            raise ValidationError("attribute codes must be unique", "attributes")
