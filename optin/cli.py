"""Operator commands: `flask --app app migrate | worker | check | forms import | signups …`."""

from __future__ import annotations

import csv
import datetime as dt
import sys

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

import convertkit

from . import account
from .db.__main__ import main as db_main
from .formspec import FormsFileError
from .pseudonyms import mask_email
from .settings import ConfigError
from .signups import STATUSES
from .worker import run_workers


def services():
    return current_app.extensions["optin"]


def when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def cell(value) -> str:
    """Visitors type these values: keep a spreadsheet from running one that starts like a formula."""
    text = str(value)
    risky = text[:1] in ("=", "+", "@", "\t", "\r") or (text[:1] == "-" and len(text) > 1)
    return "'" + text if risky else text


@click.command("migrate")
def migrate_command():
    """Apply schema changes to DATABASE_URL: the release line's step (`python -m optin.db migrate`)."""
    try:
        db_main(["migrate"])
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("worker")
@with_appcontext
@click.option("--poll", default=1.0, show_default=True, help="Seconds to sleep when nothing is due.")
@click.option(
    "--threads",
    default=4,
    show_default=True,
    envvar="WORKER_THREADS",
    help="Deliveries in flight at once (env WORKER_THREADS).",
)
def worker_command(poll, threads):
    """Deliver pending signups to ConvertKit until stopped (SIGTERM finishes the signups in hand)."""
    run_workers(services().delivery, threads=threads, poll=poll)


@click.command("check")
@with_appcontext
def check_command():
    """Check the API key (and v3's secret, if set), and that every form id, tag id and custom field key in the
    forms file exists in the ConvertKit account."""
    client = services().delivery.client
    try:
        report = account.check(client, services().forms)
        if getattr(client, "has_secret", False):
            client.account()
    except convertkit.Unauthorized as exc:
        version = services().settings.api_version
        works_with = account.other_version(client)
        if works_with:
            raise click.ClickException(account.wrong_version_message(version, works_with)) from None
        raise click.ClickException(f"ConvertKit refused the check: {exc}") from None
    except convertkit.ConvertKitError as exc:
        raise click.ClickException(f"ConvertKit refused the check: {exc}") from None
    for line in report.lines:
        click.echo(line)
    if report.problems:
        for problem in report.problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"{len(report.problems)} problem(s) in the forms file against this account")
    click.echo("credentials ok")


forms_group = AppGroup("forms", help="The forms file against the ConvertKit account.")


@forms_group.command("import")
@click.option("--write", is_flag=True, help="Append the entries to the forms file (existing ones are untouched).")
def import_command(write):
    """Print a [forms.<slug>] entry for each form of the account that the forms file does not have yet."""
    try:
        entries = account.import_entries(services().delivery.client, services().forms)
    except convertkit.ConvertKitError as exc:
        raise click.ClickException(f"ConvertKit refused to list the forms: {exc}") from None
    if not entries:
        click.echo("every form of the account is in the forms file already")
        return
    if not write:
        click.echo("\n".join(toml for _slug, toml in entries), nl=False)
        return
    path = services().settings.forms_file
    try:
        text = account.append_entries(path.read_text(encoding="utf-8"), entries)
    except FormsFileError as exc:
        raise click.ClickException(f"nothing written: {exc}") from None
    path.write_text(text, encoding="utf-8")
    click.echo(f"appended {len(entries)} form(s) to {path}: {', '.join(slug for slug, _ in entries)}")


signups_group = AppGroup("signups", help="List, inspect, retry, export and purge stored signups.")


@signups_group.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--form", help="Form slug.")
@click.option("--limit", default=50, show_default=True)
def list_command(status, form, limit):
    counts = services().signups.counts()
    click.echo("  ".join(f"{name}: {counts[name]}" for name in STATUSES))
    for s in services().signups.find(status=status, form=form, limit=limit):
        click.echo(
            f"{s.id:>8}  {s.status:<9}  {s.form_slug:<16}  {when(s.created_at)}  attempts={s.attempts}"
            f"  {mask_email(s.email)}  {s.last_error or ''}"
        )


@signups_group.command("show")
@click.argument("signup_id", type=int)
def show_command(signup_id):
    s = services().signups.get(signup_id)
    if s is None:
        raise click.ClickException(f"no signup {signup_id}")
    rows = [
        ("id", s.id),
        ("form", f"{s.form_slug} (ConvertKit form {s.convertkit_form_id})"),
        ("email", s.email),
        ("first_name", s.first_name or "-"),
        ("fields", s.fields or "-"),
        ("tags", list(s.tags) or "-"),
        ("status", s.status),
        ("attempts", s.attempts),
        ("created", when(s.created_at)),
        ("next attempt", when(s.next_attempt_at) if s.status == "pending" else "-"),
        ("last attempt", when(s.last_attempt_at)),
        ("finished", when(s.finished_at)),
        ("last error", s.last_error or "-"),
        ("subscriber id", s.subscriber_id or "-"),
        ("being sent", when(s.sending_at) if s.sending_at else "-"),
        (
            "unanswered",
            f"attempt of {when(s.unconfirmed_at)}, look-up step {s.check_page}" if s.unconfirmed_at else "-",
        ),
        ("possible duplicates", s.possible_duplicates),
    ]
    for name, value in rows:
        click.echo(f"{name:>19}: {value}")


@signups_group.command("retry")
@click.argument("signup_ids", type=int, nargs=-1)
@click.option("--failed", is_flag=True, help="Every failed signup.")
@click.option("--paused", is_flag=True, help="Lift every delivery pause (after fixing the key or form id).")
def retry_command(signup_ids, failed, paused):
    if not (signup_ids or failed or paused):
        raise click.UsageError("name signup ids, or pass --failed and/or --paused")
    if paused:
        click.echo(f"lifted {services().delivery.pauses.lift()} pause(s)")
    if signup_ids or failed:
        click.echo(f"queued {services().signups.retry(ids=signup_ids, failed=failed)} signup(s) for delivery")


@signups_group.command("export")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--form", help="Form slug.")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="File (default: stdout).")
def export_command(status, form, output):
    """CSV of signups, for a backup or an import elsewhere."""
    columns = [
        "id",
        "form_slug",
        "convertkit_form_id",
        "email",
        "first_name",
        "fields",
        "tags",
        "status",
        "attempts",
        "created_at",
        "finished_at",
        "last_error",
    ]
    writer = csv.writer(output)
    writer.writerow(columns)
    for s in services().signups.find(status=status, form=form):
        writer.writerow(
            cell(value)
            for value in [
                s.id,
                s.form_slug,
                s.convertkit_form_id,
                s.email,
                s.first_name or "",
                "; ".join(f"{k}={v}" for k, v in sorted(s.fields.items())),
                " ".join(map(str, s.tags)),
                s.status,
                s.attempts,
                when(s.created_at),
                when(s.finished_at),
                s.last_error or "",
            ]
        )


@signups_group.command("purge")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(email, yes):
    """Delete every stored signup of one address (a GDPR erasure request). ConvertKit keeps its own copy."""
    found = len(services().signups.find(email=email))
    if not found:
        click.echo("no signups for that address")
        return
    if not yes and not click.confirm(f"delete {found} signup(s) of that address?", err=True):
        sys.exit(1)
    click.echo(f"deleted {services().signups.purge(email)} signup(s)")


def init_app(app):
    for command in (migrate_command, worker_command, check_command, forms_group, signups_group):
        app.cli.add_command(command)
