import pytest

from optin.settings import ConfigError, RateLimit, Settings

BASE = {"SECRET_KEY": "s", "CONVERTKIT_API_KEY": "k"}


@pytest.mark.parametrize("missing", ["SECRET_KEY", "CONVERTKIT_API_KEY"])
def test_production_refuses_to_start_without_its_secrets(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONVERTKIT_RATE_LIMIT", "fast"),
        ("CONVERTKIT_RATE_LIMIT", "0/60"),
        ("CONVERTKIT_API_URL", "ftp://x"),
        ("DATABASE_URL", "mysql://x"),
        ("TRUSTED_PROXY_HOPS", "one"),
        ("REDIS_URL", "http://x"),
    ],
)
def test_a_bad_variable_is_named(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE, name: value})


def test_defaults_and_heroku_database_url():
    settings = Settings.from_env({**BASE, "DATABASE_URL": "postgres://u:p@h/db"})
    assert settings.database_url == "postgresql://u:p@h/db"
    assert settings.rate_limit == RateLimit(120, 60)
    assert settings.api_url == "https://api.convertkit.com/v3/"
    assert Settings.from_env({**BASE, "CONVERTKIT_RATE_LIMIT": "20/10"}).rate_limit == RateLimit(20, 10)


def test_repr_hides_secrets():
    settings = Settings.from_env(
        {"SECRET_KEY": "sk-very-secret", "CONVERTKIT_API_KEY": "key-123", "CONVERTKIT_API_SECRET": "secret-456"}
    )
    assert not any(s in repr(settings) for s in ("sk-very-secret", "key-123", "secret-456"))


def test_secret_key_fallbacks_are_listed_newest_first_and_kept_out_of_repr():
    settings = Settings.from_env({**BASE, "SECRET_KEY_FALLBACKS": " last-week-key , ,last-year-key"})
    assert settings.secret_key_fallbacks == ("last-week-key", "last-year-key")
    assert "last-week-key" not in repr(settings) and "last-year-key" not in repr(settings)
    assert Settings.from_env(BASE).secret_key_fallbacks == ()


@pytest.mark.parametrize("version, url", [("v3", "https://api.convertkit.com/v3/"), ("V4", "https://api.kit.com/v4/")])
def test_the_api_version_picks_its_default_url(version, url):
    settings = Settings.from_env({**BASE, "CONVERTKIT_API_VERSION": version})
    assert (settings.api_version, settings.api_url) == (version.lower(), url)


def test_an_unknown_api_version_stops_the_boot_with_its_name():
    with pytest.raises(ConfigError, match="CONVERTKIT_API_VERSION must be v3 or v4"):
        Settings.from_env({**BASE, "CONVERTKIT_API_VERSION": "v5"})
