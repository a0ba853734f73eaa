"""The operator's commands as the README lists them: check, and signups list / export with their options."""

import csv
import time

import pytest
from support import FORMS_TOML


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def add(services, slug, email, *, failed=False, **values):
    form_id = services.forms[slug].convertkit_form_id
    signup = services.signups.record(
        form_slug=slug,
        convertkit_form_id=form_id,
        email=email,
        first_name=values.pop("first_name", None),
        fields=values,
        tags=(),
        ip_hash=None,
    )
    if failed:
        [claimed] = services.signups.claim("w", lease_seconds=60)
        services.signups.mark_retry(claimed, "w", at=time.time(), next_attempt_at=time.time(), error="5xx", failed=True)
    return signup.id


def listed_ids(runner, *options) -> list[int]:
    result = runner.invoke(args=["signups", "list", *options])
    assert result.exit_code == 0, result.output
    return [int(line.split()[0]) for line in result.output.splitlines()[1:]]


def test_list_narrows_to_a_status_and_to_a_form(runner, services):
    failed = add(services, "launch", "failed@example.com", failed=True)
    launch = add(services, "launch", "launch@example.com")
    simple = add(services, "simple", "simple@example.com")
    assert listed_ids(runner) == [failed, launch, simple]
    assert listed_ids(runner, "--status", "failed") == [failed]
    assert listed_ids(runner, "--form", "launch") == [failed, launch]
    assert listed_ids(runner, "--status", "pending", "--form", "simple") == [simple]


@pytest.mark.parametrize(
    ("typed", "exported"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1+1", "'+1+1"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("-2+3", "'-2+3"),
        ("\t=1", "'\t=1"),
        ("Ann", "Ann"),
        ("-", "-"),
    ],
)
def test_export_writes_a_csv_file_with_formulas_defused(runner, services, tmp_path, typed, exported):
    add(services, "launch", "ann@example.com", first_name=typed, company=typed)
    path = tmp_path / "signups.csv"
    result = runner.invoke(args=["signups", "export", "-o", str(path)])
    assert result.exit_code == 0 and result.output == ""
    with path.open(encoding="utf-8", newline="") as exported_file:
        [row] = list(csv.DictReader(exported_file))
    assert row["email"] == "ann@example.com" and row["status"] == "pending"
    assert row["first_name"] == exported
    assert row["fields"] == f"company={typed}"


@pytest.fixture
def known_forms_only(forms_file):
    """The example forms without 'ghost', whose id the sandbox does not have."""
    forms_file.write_text(FORMS_TOML.split("[forms.ghost]")[0])


def test_check_passes_when_the_key_the_secret_and_every_form_id_are_good(known_forms_only, runner):
    result = runner.invoke(args=["check"])
    assert result.exit_code == 0, result.output
    assert "launch: ConvertKit form 4242 ok" in result.output and "credentials ok" in result.output


@pytest.mark.parametrize("variable", ["CONVERTKIT_API_KEY", "CONVERTKIT_API_SECRET"])
def test_check_fails_on_a_wrong_key_or_secret(known_forms_only, make_app, variable):
    result = make_app(**{variable: "not-the-right-one"}).test_cli_runner().invoke(args=["check"])
    assert result.exit_code != 0
    assert "ConvertKit refused the check" in result.output and "credentials ok" not in result.output
