import pytest

from optin.formspec import FormsFileError, load_forms, parse_forms


def test_the_example_forms_file_loads():
    forms = load_forms("forms.toml")
    assert forms["launch"].convertkit_form_id == 4242
    assert [f.name for f in forms["newsletter"].fields] == ["first_name", "company"]


def test_a_full_form_table():
    spec = parse_forms(
        {
            "forms": {
                "launch": {
                    "convertkit_form_id": 4242,
                    "title": "T",
                    "redirect_url": "https://example.com/thanks",
                    "tags": [11, 22],
                    "allowed_origins": ["https://Example.com/"],
                    "fields": [{"name": "company", "label": "Company", "required": True}],
                }
            }
        }
    )["launch"]
    assert spec.tags == (11, 22)
    assert spec.allowed_origins == ("https://example.com",)
    assert spec.allows_origin("https://example.com") and not spec.allows_origin("https://evil.example")
    assert spec.fields[0].required


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({}, "form 'launch', key 'convertkit_form_id'"),
        ({"convertkit_form_id": "4242"}, "key 'convertkit_form_id'"),
        ({"convertkit_form_id": 1, "redirect_url": "javascript:alert(1)"}, "key 'redirect_url'"),
        ({"convertkit_form_id": 1, "tags": ["x"]}, "key 'tags'"),
        ({"convertkit_form_id": 1, "allowed_origins": ["example.com"]}, "key 'allowed_origins'"),
        ({"convertkit_form_id": 1, "titel": "typo"}, "key 'titel': unknown key"),
        ({"convertkit_form_id": 1, "fields": [{"name": "email", "label": "E"}]}, "field 1, key 'name'"),
        ({"convertkit_form_id": 1, "fields": [{"name": "company"}]}, "field 1 (company), key 'label'"),
        ({"convertkit_form_id": 1, "challenge": "recaptcha"}, "key 'challenge'"),
        ({"convertkit_form_id": 1, "challenge": "turnstile"}, "key 'challenge_site_key': required"),
        ({"convertkit_form_id": 1, "challenge": "hcaptcha"}, "key 'challenge_site_key': required"),
        ({"convertkit_form_id": 1, "blocked_domains": "mailinator.com"}, "key 'blocked_domains'"),
        (
            {"convertkit_form_id": 1, "fields": [{"name": "company", "label": "C", "required": "yes"}]},
            "field 1 (company), key 'required'",
        ),
    ],
)
def test_a_wrong_forms_file_names_the_form_the_key_and_the_problem(table, expected):
    with pytest.raises(FormsFileError) as info:
        parse_forms({"forms": {"launch": table}})
    assert expected in str(info.value)


def test_a_bad_slug_is_refused():
    with pytest.raises(FormsFileError, match="slug"):
        parse_forms({"forms": {"../etc": {"convertkit_form_id": 1}}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FormsFileError, match="does not exist"):
        load_forms(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[forms.x\n")
    with pytest.raises(FormsFileError, match="not valid TOML"):
        load_forms(bad)


def test_a_wrong_forms_file_stops_the_app_at_start_up_with_the_readme_message(make_app, forms_file):
    forms_file.write_text('[forms.launch]\nconvertkit_form_id = 4242\nredirect_url = "ftp://example.com/thanks"\n')
    with pytest.raises(FormsFileError) as info:
        make_app()
    assert str(info.value) == "form 'launch', key 'redirect_url': must be an http(s) URL"
