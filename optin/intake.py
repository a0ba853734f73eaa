"""Every way a signup comes in goes through this one pipeline, in this order:
size → honeypot → token (signature, form, age, replay) → rate limits → challenge → validation → store → deliver.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Literal

from .addresses import canonical
from .delivery import Delivery
from .forms import HONEYPOT, SignupForm, build_form
from .formspec import FormSpec
from .limiter import Windows
from .nonces import Nonces
from .pseudonyms import mask_email, pseudonym
from .signups import Signups
from .tokens import TokenContext, TokenProblem, TokenSigner

log = logging.getLogger("optin.intake")

FORM_ERRORS = "_form"

# A refused token is "invalid": the form comes back (422) with the reason and a fresh token.
ResultKind = Literal["accepted", "invalid", "limited"]


@dataclass
class Result:
    kind: ResultKind
    form: SignupForm
    status: int = 200
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.kind == "accepted"


class Intake:
    def __init__(
        self,
        *,
        settings,
        form_classes: dict[str, type[SignupForm]],
        signer: TokenSigner,
        nonces: Nonces,
        windows: Windows,
        signups: Signups,
        delivery: Delivery,
        challenges,
    ):
        self.settings = settings
        self.form_classes = form_classes
        self.signer = signer
        self.nonces = nonces
        self.windows = windows
        self.signups = signups
        self.db = signups.db
        self.delivery = delivery
        self.challenges = challenges

    def blank(self, spec: FormSpec) -> SignupForm:
        return build_form(self.form_classes[spec.slug], TokenContext(self.signer, spec.slug))

    def ip_hash(self, ip: str | None) -> str | None:
        if not ip:
            return None
        return pseudonym("ip", ip)

    def submit(self, spec: FormSpec, formdata, *, client_ip: str | None) -> Result:
        form = build_form(self.form_classes[spec.slug], TokenContext(self.signer, spec.slug), formdata)
        valid = form.validate()

        if (formdata.get(HONEYPOT) or "").strip():
            # A bot: look like success so it learns nothing, but store and forward nothing.
            log.info("honeypot filled on form %s; dropped", spec.slug)
            return Result("accepted", form)

        token_errors = form.errors.get("token")
        if token_errors:
            return self._refused(form, token_errors[0])
        ip_key = self.ip_hash(client_ip)

        problems: dict[str, list[str]] | None = None
        if not valid:
            problems = {name: list(errs) for name, errs in form.errors.items() if name != "token"}
        elif address(form).rsplit("@", 1)[-1].lower() in spec.blocked_domains:
            problems = {"email": ["Please use a different email address."]}

        if problems is None and not spec.challenge:
            # Nothing stands between the token and the signup: one commit for all of it.
            return self._keep(spec, form, ip_key, admit=True)
        refusal = self._admit(form, ip_key)
        if refusal is not None:
            return refusal
        if spec.challenge and not self.challenges.verify(spec, formdata, client_ip):
            return self._invalid(form, {FORM_ERRORS: ["Please complete the verification and submit again."]})
        if problems is not None:
            return self._invalid(form, problems)
        return self._keep(spec, form, ip_key, admit=False)

    def _admit(self, form: SignupForm, ip_key: str | None) -> Result | None:
        """Spend the token's nonce and count the post in the client's window; a Result when either refuses."""
        with self.db.transaction():  # joins the caller's transaction when there is one
            fresh = self.nonces.use(form.token.checked.nonce, self.signer.max_age)
            crowded = fresh and ip_key and not self.windows.acquire("ip:" + ip_key, self.settings.ip_limit)
        if not fresh:
            return self._refused(form, TokenProblem.MESSAGES["replayed"])
        if crowded:
            log.info("form %s: too many submissions from one client", form.token.checked.slug)
            return self._limited(form, "Too many attempts from your network. Please wait a minute and try again.")
        return None

    def _keep(self, spec: FormSpec, form: SignupForm, ip_key: str | None, *, admit: bool) -> Result:
        """Store the signup (of a form that validated), then try it at once if ConvertKit's limit had room and no
        older signup was waiting (never waiting for room)."""
        email = address(form)
        email_key = pseudonym("inbox", canonical(email))
        values = form.values()
        slot = signup = None
        owner = "web:" + secrets.token_hex(6)  # the lease, when it may go now, is this request's alone
        try_now = self.delivery.may_try_now(spec.convertkit_form_id)
        try:
            # One commit for (the token and the client's window, when `admit`,) the address's window, the
            # ConvertKit slot and the signup. The slot comes first, so the signup is stored already leased to
            # this request when it may go now, and simply pending for the worker when not.
            with self.db.transaction():
                refusal = self._admit(form, ip_key) if admit else None
                if refusal is not None:
                    return refusal
                if self.windows.acquire("email:" + email_key, self.settings.email_limit):
                    slot = self.delivery.reserve() if try_now else None
                    signup = self.signups.record(
                        form_slug=spec.slug,
                        convertkit_form_id=spec.convertkit_form_id,
                        email=email,
                        first_name=values.pop("first_name", None),
                        fields=values,
                        tags=spec.tags,
                        ip_hash=ip_key,
                        referrer=form.page_url(),
                        lease_owner=owner if slot else None,
                        lease_seconds=self.delivery.lease_seconds,
                    )
        except BaseException:
            if slot:  # windows kept in Redis do not roll back with the database
                self.delivery.release(slot)
            raise
        if signup is None:
            log.info("form %s: too many signups for %s today", spec.slug, mask_email(email))
            return self._limited(
                form,
                "This address has been signed up several times today. "
                "Please check your inbox for the confirmation email.",
            )
        if slot is None:
            return Result("accepted", form)
        outcome = self.delivery.deliver_inline(signup, owner, slot)
        if outcome.kind == "rejected":
            return self._invalid(form, {"email": [outcome.message]})
        return Result("accepted", form)

    def _refused(self, form, message: str) -> Result:
        """A token problem, shown with any field errors so the visitor fixes everything in one go."""
        errors = {name: list(errs) for name, errs in form.errors.items() if name != "token"}
        return self._invalid(form, {FORM_ERRORS: [message], **errors})

    def _invalid(self, form, errors) -> Result:
        for name, messages in errors.items():
            if name in form:
                form[name].errors = list(messages)
        self._next_token(form)
        return Result("invalid", form, status=422, errors=errors)

    def _limited(self, form, message: str) -> Result:
        self._next_token(form)
        return Result("limited", form, status=429, errors={FORM_ERRORS: [message]})

    def _next_token(self, form: SignupForm) -> None:
        """A form shown again gets a fresh token that keeps the time its first one was served (when that one was
        genuine), so fixing a field quickly is not mistaken for a bot. An accepted post needs no next token."""
        slug = form.meta.csrf_context.slug
        checked = getattr(form.token, "checked", None)
        served_at = checked.issued_at if checked else self.signer.served_at(form.token.data, slug)
        form.token.current_token = self.signer.issue(slug, issued_at=served_at)


def address(form: SignupForm) -> str:
    """The address of a form that validated: email-validator's normalized form, when it made one."""
    return form.email.normalized or form.email.data.strip()
