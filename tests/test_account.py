"""The account as the source of truth: `flask --app app check` and `flask --app app forms import`, on v3 and v4."""

import pytest
from support import v4_env

from optin.formspec import load_forms

IMPORTED = {"5001": "Spring sale", "5002": "Spring sale", "5003": 'Quotes "and" \\ backslashes'}


def on(version, env, ck):
    return env if version == "v3" else v4_env(env, ck)


@pytest.fixture(params=["v3", "v4"])
def version(request):
    return request.param


def test_check_names_each_unknown_tag_and_custom_field_with_its_form(make_app, env, ck, version, forms_file):
    forms_file.write_text(
        forms_file.read_text()
        + """
[forms.extras]
convertkit_form_id = 4243
title = "Extras"
tags = [101, 999]

[[forms.extras.fields]]
name = "favourite_colour"
label = "Favourite colour"
"""
    )
    result = make_app(**on(version, env, ck)).test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 1
    assert "form 'extras', key 'tags': ConvertKit has no tag 999" in result.output
    assert "form 'extras', key 'fields': ConvertKit has no custom field 'favourite_colour'" in result.output
    assert "form 'ghost', key 'convertkit_form_id': ConvertKit has no form 999999" in result.output
    assert "form 'launch'" not in result.output.split("ok (")[-1]  # launch's tags and fields exist


def test_check_passes_when_everything_exists(make_app, env, ck, version, forms_file):
    ck.configure(forms={"999999": "Created at last"})
    result = make_app(**on(version, env, ck)).test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 0, result.output
    assert "credentials ok" in result.output


@pytest.mark.parametrize("configured, key", [("v3", "v4"), ("v4", "v3")])
def test_a_key_of_the_other_version_is_named_plainly(make_app, env, ck, configured, key):
    settings = on(configured, env, ck)
    settings["CONVERTKIT_API_KEY"] = ck.v4_api_key if key == "v4" else ck.api_key
    settings["CONVERTKIT_API_SECRET"] = ""
    result = make_app(**settings).test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 1
    assert f"works with Kit's {key} API: set CONVERTKIT_API_VERSION={key}" in result.output
    assert settings["CONVERTKIT_API_KEY"] not in result.output


def test_import_prints_then_writes_complete_entries(make_app, env, ck, version, forms_file):
    ck.configure(forms=IMPORTED)
    before = forms_file.read_text()
    app = make_app(**on(version, env, ck))
    printed = app.test_cli_runner().invoke(args=["forms", "import"])
    assert printed.exit_code == 0, printed.output
    assert "[forms.spring-sale]" in printed.output and "[forms.spring-sale-2]" in printed.output
    assert "[forms.launch]" not in printed.output  # already in the file
    assert forms_file.read_text() == before  # printing writes nothing
    written = app.test_cli_runner().invoke(args=["forms", "import", "--write"])
    assert written.exit_code == 0, written.output
    assert forms_file.read_text().startswith(before)  # existing entries untouched
    forms = load_forms(forms_file)
    assert {forms[s].convertkit_form_id for s in ("spring-sale", "spring-sale-2")} == {5001, 5002}
    assert [s for s in forms.values() if s.convertkit_form_id == 5003][0].title.startswith('Quotes "and"')
    ck.configure(forms={"999999": "Created at last"})
    check = make_app(**on(version, env, ck)).test_cli_runner().invoke(args=["check"])
    assert check.exit_code == 0, check.output  # the file passes the check with what was appended
    again = make_app(**on(version, env, ck)).test_cli_runner().invoke(args=["forms", "import"])
    assert "every form of the account is in the forms file already" in again.output


def test_the_worker_says_once_at_start_that_the_key_is_for_the_other_version(env, ck, worker):
    from support import wait_until

    settings = {**v4_env(env, ck), "CONVERTKIT_API_KEY": ck.api_key}  # a v3 key with v4 configured
    process = worker(settings)
    wait_until(lambda: "CONVERTKIT_API_VERSION=v3" in process.output(), 20, "no word about the key's version")
    assert process.output().count("set CONVERTKIT_API_VERSION=v3") == 1
    assert ck.api_key not in process.output()
