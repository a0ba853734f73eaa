"""forms.toml → FormSpec objects, validated once at start-up so a typo stops the boot instead of a signup."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .challenges import PROVIDERS, Provider

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
RESERVED_FIELDS = {"email", "token", "hp", *(provider.response_field for provider in PROVIDERS.values())}


class FormsFileError(ValueError):
    """The forms file is wrong; the message names the form, the key and the problem."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    required: bool = False
    max_length: int = 200

    @property
    def is_first_name(self) -> bool:
        return self.name == "first_name"


@dataclass(frozen=True)
class FormSpec:
    slug: str
    convertkit_form_id: int
    title: str
    description: str = ""
    button: str = "Subscribe"
    success_message: str = "Thanks! Check your inbox to confirm your subscription."
    redirect_url: str | None = None
    tags: tuple[int, ...] = ()
    allowed_origins: tuple[str, ...] | None = None
    fields: tuple[FieldSpec, ...] = ()
    blocked_domains: frozenset[str] = frozenset()
    challenge: str | None = None
    challenge_site_key: str | None = None

    @property
    def challenge_provider(self) -> Provider | None:
        return PROVIDERS.get(self.challenge or "")

    def allows_origin(self, origin: str | None) -> bool:
        """Absent allowed_origins means any site may embed and post."""
        if self.allowed_origins is None:
            return True
        return origin is not None and origin.rstrip("/").lower() in self.allowed_origins


def load_forms(path: str | Path) -> dict[str, FormSpec]:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormsFileError(f"forms file {str(path)!r} does not exist (set FORMS_FILE)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FormsFileError(f"forms file {str(path)!r} is not valid TOML: {exc}") from None
    return parse_forms(raw)


def parse_forms(raw: dict) -> dict[str, FormSpec]:
    forms = raw.get("forms")
    if not isinstance(forms, dict) or not forms:
        raise FormsFileError("the forms file has no [forms.<slug>] tables")
    return {slug: _parse_form(slug, table) for slug, table in forms.items()}


def _origin(value: object, where: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if not parts or parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise FormsFileError(f"{where}: {value!r} is not an origin like https://example.com")
    if parts.query or parts.fragment or parts.username:
        raise FormsFileError(f"{where}: {value!r} is not an origin like https://example.com")
    return f"{parts.scheme}://{parts.netloc}".lower()


def _parse_form(slug: str, table: object) -> FormSpec:
    where = f"form {slug!r}"
    if not SLUG.fullmatch(slug):
        raise FormsFileError(f"{where}: the slug must be lowercase letters, digits, - or _ (at most 64)")
    if not isinstance(table, dict):
        raise FormsFileError(f"{where}: must be a table")

    def text(key: str, default: str | None = None) -> str | None:
        value = table.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise FormsFileError(f"{where}, key {key!r}: must be a non-empty string")
        return value

    def text_or(key: str, default: str) -> str:
        return text(key) or default

    known = {
        "convertkit_form_id",
        "title",
        "description",
        "button",
        "success_message",
        "redirect_url",
        "tags",
        "allowed_origins",
        "fields",
        "blocked_domains",
        "challenge",
        "challenge_site_key",
    }
    for key in table:
        if key not in known:
            raise FormsFileError(f"{where}, key {key!r}: unknown key (known: {', '.join(sorted(known))})")

    form_id = table.get("convertkit_form_id")
    if isinstance(form_id, bool) or not isinstance(form_id, int) or form_id <= 0:
        raise FormsFileError(f"{where}, key 'convertkit_form_id': required, a positive integer")

    redirect_url = text("redirect_url")
    if redirect_url is not None:
        parts = urlsplit(redirect_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FormsFileError(f"{where}, key 'redirect_url': must be an http(s) URL")

    tags = table.get("tags", [])
    if not isinstance(tags, list) or any(isinstance(t, bool) or not isinstance(t, int) or t <= 0 for t in tags):
        raise FormsFileError(f"{where}, key 'tags': must be a list of ConvertKit tag ids (positive integers)")

    origins = table.get("allowed_origins")
    if origins is not None:
        if not isinstance(origins, list) or not origins:
            raise FormsFileError(f"{where}, key 'allowed_origins': must be a non-empty list of origins")
        origins = tuple(_origin(o, f"{where}, key 'allowed_origins'") for o in origins)

    domains = table.get("blocked_domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) and d.strip() for d in domains):
        raise FormsFileError(f"{where}, key 'blocked_domains': must be a list of domain names")

    challenge = table.get("challenge")
    if challenge is not None and challenge not in PROVIDERS:
        raise FormsFileError(f"{where}, key 'challenge': must be one of {', '.join(sorted(PROVIDERS))}")
    site_key = text("challenge_site_key")
    if challenge is not None and PROVIDERS[challenge].third_party and not site_key:
        raise FormsFileError(f"{where}, key 'challenge_site_key': required for challenge = {challenge!r}")

    return FormSpec(
        slug=slug,
        convertkit_form_id=form_id,
        title=text_or("title", slug.replace("-", " ").replace("_", " ").capitalize()),
        description=table.get("description") or "",
        button=text_or("button", FormSpec.button),
        success_message=text_or("success_message", FormSpec.success_message),
        redirect_url=redirect_url,
        tags=tuple(tags),
        allowed_origins=origins,
        fields=_parse_fields(where, table.get("fields", [])),
        blocked_domains=frozenset(d.strip().lower().lstrip("@") for d in domains),
        challenge=challenge,
        challenge_site_key=site_key,
    )


def _parse_fields(where: str, fields: object) -> tuple[FieldSpec, ...]:
    if not isinstance(fields, list):
        raise FormsFileError(f"{where}, key 'fields': must be an array of tables ([[forms.<slug>.fields]])")
    seen: set[str] = set()
    parsed = []
    for number, item in enumerate(fields, 1):
        here = f"{where}, field {number}"
        if not isinstance(item, dict):
            raise FormsFileError(f"{here}: must be a table with name and label")
        name = item.get("name")
        if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
            raise FormsFileError(f"{here}, key 'name': must be a ConvertKit field key like first_name or company")
        if name in RESERVED_FIELDS or name in seen:
            raise FormsFileError(f"{here}, key 'name': {name!r} is reserved or used twice")
        label = item.get("label")
        if not isinstance(label, str) or not label.strip():
            raise FormsFileError(f"{here} ({name}), key 'label': required, a visible label")
        required = item.get("required", False)
        if not isinstance(required, bool):
            raise FormsFileError(f"{here} ({name}), key 'required': must be true or false")
        unknown = set(item) - {"name", "label", "required"}
        if unknown:
            raise FormsFileError(f"{here} ({name}): unknown key {sorted(unknown)[0]!r}")
        seen.add(name)
        parsed.append(FieldSpec(name=name, label=label, required=required))
    return tuple(parsed)
