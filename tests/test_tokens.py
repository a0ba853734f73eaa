import pytest

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


@pytest.mark.parametrize(("later", "slug", "kind"), [
    (0.5, "launch", "too_fast"),
    (3601, "launch", "expired"),
    (10, "other", "wrong_form"),
])
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
