"""The ConvertKit account as the source of truth: what the forms file names must exist there, and the account's
forms can be turned into forms-file entries (`flask --app app check`, `flask --app app forms import`)."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import convertkit

from .formspec import SLUG, FormSpec, parse_forms

BUILT_IN_FIELDS = {"first_name"}  # sent as first_name, not as a custom field


@dataclass(frozen=True)
class Report:
    lines: list[str]  # one per form: what was found
    problems: list[str]  # each names the form and the key at fault


def check(client, specs: Mapping[str, FormSpec]) -> Report:
    """Every form id, tag id and custom field key named in the forms file exists in the account. Kit drops an
    unknown custom field without a word, so an owner would otherwise never learn why the data is missing."""
    forms = {int(f["id"]): f.get("name") for f in client.forms() if "id" in f}
    tags = {int(t["id"]) for t in client.tags() if "id" in t}
    fields = {str(f["key"]) for f in client.custom_fields() if f.get("key")}
    lines, problems = [], []
    for spec in specs.values():
        where = f"form {spec.slug!r}"
        form_id = spec.convertkit_form_id
        if form_id in forms:
            lines.append(f"{spec.slug}: ConvertKit form {form_id} ok ({forms[form_id]})")
        else:
            lines.append(f"{spec.slug}: ConvertKit form {form_id} missing!")
            problems.append(f"{where}, key 'convertkit_form_id': ConvertKit has no form {spec.convertkit_form_id}")
        problems += [f"{where}, key 'tags': ConvertKit has no tag {tag}" for tag in spec.tags if tag not in tags]
        problems += [
            f"{where}, key 'fields': ConvertKit has no custom field {f.name!r} (create it in ConvertKit)"
            for f in spec.fields
            if f.name not in BUILT_IN_FIELDS and f.name not in fields
        ]
    return Report(lines, problems)


def other_version(client) -> str | None:
    """After a 401: the API version the key does work with, if it is not the configured one. v4 keys do not work
    on v3, nor v3 keys on v4, and a key pasted with the wrong version looks like a wrong key."""
    other_cls = convertkit.Client if isinstance(client, convertkit.ClientV4) else convertkit.ClientV4
    mine, theirs = ("v4", "v3") if isinstance(client, convertkit.ClientV4) else ("v3", "v4")
    probe = client.sibling(other_cls, _swap_version(client.base_url, mine, theirs))
    try:
        probe.forms()
    except convertkit.ConvertKitError:
        return None
    finally:
        probe.close()
    return theirs


def _swap_version(url: str, mine: str, theirs: str) -> str:
    """Kit's other base URL, or this one with its version segment swapped (a sandbox, a proxy)."""
    defaults = {"v3": convertkit.client.DEFAULT_BASE_URL, "v4": convertkit.v4.DEFAULT_BASE_URL}
    if url == defaults[mine]:
        return defaults[theirs]
    parts = urlsplit(url)
    path = re.sub(rf"/{mine}/?$", f"/{theirs}/", parts.path)
    return urlunsplit(parts._replace(path=path))


def wrong_version_message(version: str, works_with: str) -> str:
    return (
        f"CONVERTKIT_API_KEY is not a {version} key but works with Kit's {works_with} API: "
        f"set CONVERTKIT_API_VERSION={works_with}"
    )


def import_entries(client, specs: Mapping[str, FormSpec]) -> list[tuple[str, str]]:
    """(slug, TOML) for each form of the account not yet in the forms file, in the account's order; each entry is
    complete, so the file passes `check` with it."""
    known = {spec.convertkit_form_id for spec in specs.values()}
    taken = set(specs)
    entries = []
    for form in client.forms():
        if "id" not in form or int(form["id"]) in known or form.get("archived"):
            continue
        slug = _free_slug(_slugify(str(form.get("name") or f"form-{form['id']}")), taken)
        taken.add(slug)
        values = {
            "convertkit_form_id": int(form["id"]),
            "title": _text(form.get("title")) or _text(form.get("name")) or slug,
            "description": _text(form.get("description")),
            "button": _text(form.get("sign_up_button_text")),
            "success_message": _text(form.get("success_message")),
        }
        body = "".join(f"{key} = {_toml(value)}\n" for key, value in values.items() if value)
        entries.append((slug, f"[forms.{slug}]\n{body}"))
    return entries


def append_entries(existing: str, entries: Iterable[tuple[str, str]]) -> str:
    """The forms file with the entries appended, validated as the app will read it; the old text is untouched."""
    addition = "\n".join(toml for _slug, toml in entries)
    text = existing if existing.endswith("\n") or not existing else existing + "\n"
    text = f"{text}\n# Imported from the ConvertKit account by `flask --app app forms import --write`.\n{addition}"
    parse_forms(tomllib.loads(text))  # raises FormsFileError naming the form and key if anything is off
    return text


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:56] or "form"
    return slug if SLUG.fullmatch(slug) else "form-" + slug


def _free_slug(slug: str, taken: set[str]) -> str:
    candidate, n = slug, 2
    while candidate in taken:
        candidate, n = f"{slug}-{n}", n + 1
    return candidate


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _toml(value) -> str:
    """A TOML basic string or integer: JSON's string escapes are TOML's, but for DEL."""
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
