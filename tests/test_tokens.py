import pytest
from support import extract_token

from optin.tokens import TokenProblem, TokenSigner


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def signer(clock):
    return TokenSigner("secret", min_age=2, max_age=3600, clock=clock)


def test_a_token_is_accepted_after_the_minimum_fill_time(signer, clock):
    token = signer.issue("launch")
    clock.now += 2.5
    checked = signer.check(token, "launch")
    assert checked.slug == "launch" and checked.nonce


@pytest.mark.parametrize(
    ("later", "slug", "kind"),
    [
        (0.5, "launch", "too_fast"),
        (3601, "launch", "expired"),
        (10, "other", "wrong_form"),
    ],
)
def test_refusals(signer, clock, later, slug, kind):
    token = signer.issue("launch")
    clock.now += later
    with pytest.raises(TokenProblem) as info:
        signer.check(token, slug)
    assert info.value.kind == kind


@pytest.mark.parametrize("token", ["", None, "garbage", "W10.abc"])
def test_missing_or_forged(signer, token):
    with pytest.raises(TokenProblem):
        signer.check(token, "launch")


def test_a_token_signed_with_another_key_is_refused(clock):
    token = TokenSigner("other", clock=clock).issue("launch")
    clock.now += 10
    with pytest.raises(TokenProblem) as info:
        TokenSigner("secret", clock=clock).check(token, "launch")
    assert info.value.kind == "invalid"


def test_every_token_is_distinct(signer):
    assert signer.issue("launch") != signer.issue("launch")


def test_a_rotated_key_still_verifies_tokens_signed_with_the_old_one_until_they_expire(clock):
    served = TokenSigner("old-key", clock=clock).issue("launch")
    rotated = TokenSigner("new-key", fallbacks=("middle-key", "old-key"), max_age=3600, clock=clock)
    clock.now += 10
    assert rotated.check(served, "launch").slug == "launch"
    assert rotated.served_at(served, "launch") == pytest.approx(clock.now - 10)
    with pytest.raises(TokenProblem) as info:
        TokenSigner("new-key", clock=clock).check(served, "launch")  # no fallback: refused
    assert info.value.kind == "invalid"
    fresh = rotated.issue("launch")  # signed with the new key only
    clock.now += 10
    with pytest.raises(TokenProblem):
        TokenSigner("old-key", clock=clock).check(fresh, "launch")
    assert TokenSigner("new-key", clock=clock).check(fresh, "launch")
    clock.now += 3600
    with pytest.raises(TokenProblem) as info:
        rotated.check(served, "launch")
    assert info.value.kind == "expired"


@pytest.mark.parametrize(("fallbacks", "accepted"), [("", False), ("older-key, old-key-that-served-it", True)])
def test_a_form_served_before_a_key_rotation_can_still_be_posted(make_app, fallbacks, accepted):
    before = make_app(SECRET_KEY="old-key-that-served-it").test_client()
    token = extract_token(before.get("/f/simple").get_data(as_text=True))
    after = make_app(SECRET_KEY="new-key-after-rotation", SECRET_KEY_FALLBACKS=fallbacks)
    assert after.config["SECRET_KEY_FALLBACKS"] == [k.strip() for k in fallbacks.split(",") if k.strip()]
    response = after.test_client().post(
        "/f/simple", data={"token": token, "email": "rotated@example.com"}, headers={"Accept": "application/json"}
    )
    assert (response.status_code, response.json["ok"]) == ((200, True) if accepted else (422, False))
