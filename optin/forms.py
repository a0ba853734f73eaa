"""The signup form a visitor fills in: one Flask-WTF class per FormSpec, built once at start-up."""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from .formspec import FormSpec
from .tokens import FormToken, TokenContext

HONEYPOT = "hp"
MAX_URL = 2048


def no_control_characters(form, field):
    """Newlines and control characters have no place in a name or an address, and break CSV exports."""
    if field.data and any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in field.data):
        raise ValidationError("Please remove line breaks and special characters.")


class Email(EmailField):
    """An address checked for syntax only (no DNS: a slow resolver must not slow the form)."""

    normalized: str | None = None

    def pre_validate(self, form):
        self.normalized = None
        if not self.data:
            return
        try:
            self.normalized = validate_email(self.data, check_deliverability=False).normalized
        except EmailNotValidError:
            raise ValidationError("Please enter a valid email address, like name@example.com.") from None


class SignupForm(FlaskForm):
    class Meta:
        csrf = True
        csrf_class = FormToken
        csrf_field_name = "token"

    email = Email(
        "Email address",
        validators=[DataRequired("Please enter your email address."), Length(max=254), no_control_characters],
        render_kw={"autocomplete": "email", "inputmode": "email", "spellcheck": "false"},
    )
    hp = StringField("Leave this field empty", render_kw={"autocomplete": "off", "tabindex": "-1"})
    # The page the form was on, filled in by form.js; Kit's v4 API keeps it and reads its UTM parameters.
    referrer = HiddenField()

    @property
    def extra_fields(self):
        return [self[name] for name in self.extra_names]

    def page_url(self) -> str | None:
        """The referrer if it is a plain http(s) URL of sane length; anything else is dropped, not refused."""
        value = (self.referrer.data or "").strip()
        parts = urlsplit(value) if len(value) <= MAX_URL and value.isprintable() else None
        return value if parts and parts.scheme in ("http", "https") and parts.hostname else None

    def values(self) -> dict[str, str]:
        """What the visitor entered in the configured extra fields, trimmed, empty ones left out."""
        return {name: self[name].data.strip() for name in self.extra_names if (self[name].data or "").strip()}


def form_class(spec: FormSpec) -> type[SignupForm]:
    attrs: dict = {"extra_names": tuple(f.name for f in spec.fields)}
    for field in spec.fields:
        required = DataRequired(f"Please fill in {field.label.lower()}.") if field.required else Optional()
        autocomplete = {"first_name": "given-name", "last_name": "family-name", "company": "organization"}
        attrs[field.name] = StringField(
            field.label,
            validators=[required, Length(max=field.max_length), no_control_characters],
            render_kw={"autocomplete": autocomplete.get(field.name, "on"), "maxlength": field.max_length},
            filters=[lambda v: v.strip() if isinstance(v, str) else v],
        )
    return type(f"SignupForm_{spec.slug}", (SignupForm,), attrs)


def build_form(form_cls: type[SignupForm], context: TokenContext, formdata=None) -> SignupForm:
    return form_cls(formdata=formdata, meta={"csrf_context": context})
