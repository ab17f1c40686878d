"""Flask-WTF forms (every one carries the CSRF token; plain buttons post the token from ``csrf_token()``,
checked by the app-wide ``CSRFProtect``), and how the subscriber's forms reach the provisioning core:
its name rule validates the name fields, its refusals show under the field they name."""

from __future__ import annotations

from typing import Any

from flask import flash
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp, ValidationError

from bridge import provisioning
from bridge.config import Config
from bridge.db.models import Contact, Group, InstantConference
from bridge.phone import PhoneError, to_e164
from bridge.provisioning import Member, ProvisioningError
from bridge.provisioning.audit import snapshot_contact, snapshot_group, snapshot_ic
from bridge.provisioning.names import check_name
from web import db
from web.portal_audit import audit


class NameRule:
    """The provisioning core's name rule (``bridge.provisioning.names``: any Unicode letter first), so the
    form refuses exactly what the SMS commands refuse, with the same words."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, form: FlaskForm, field: StringField) -> None:
        try:
            check_name(field.data or "", self.what, field=field.name)
        except ProvisioningError as exc:
            raise ValidationError(exc.message) from exc


def refuse(form: FlaskForm, exc: ProvisioningError) -> None:
    """Roll the request's transaction back and show the core's refusal under the field it names (flashed
    when the form has no such field)."""
    db.session().rollback()
    field = getattr(form, exc.field, None) if exc.field else None
    if field is None or not hasattr(field, "errors"):
        flash(exc.message, "error")
    else:
        field.errors = [*field.errors, exc.message]


def numbers(text: str | None, default_country: str, limit: int) -> list[str]:
    """Numbers from a textarea (one per line or comma separated), normalised; ValueError names the bad one."""
    out: list[str] = []
    for raw in (text or "").replace(",", "\n").splitlines():
        if raw.strip():
            try:
                number = to_e164(raw, default_country)
            except PhoneError as exc:
                raise ValueError(str(exc)) from exc
            if number not in out:
                out.append(number)
    if len(out) > limit:
        raise ValueError(f"at most {limit} numbers")
    return out


def chosen(model: type[Contact] | type[Group], ids: list[int] | None, choices: Any) -> list[Member]:
    """The rows picked in a multi-checkbox, only among its choices (an id of another tenant is ignored)."""
    allowed = {value for value, _label in choices}
    rows: list[Member] = []
    for row_id in ids or []:
        row = db.session().get(model, row_id) if row_id in allowed else None
        if isinstance(row, Contact | Group):
            rows.append(row)
    return rows


class MultiCheckboxField(SelectMultipleField):  # type: ignore[misc]
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class LoginForm(FlaskForm):  # type: ignore[misc]
    username = StringField("Username", validators=[DataRequired(), Length(max=80)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


class PasswordChangeForm(FlaskForm):  # type: ignore[misc]
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=200)])
    new = PasswordField("New password", validators=[DataRequired(), Length(min=8, max=200)])
    confirm = PasswordField(
        "New password again", validators=[DataRequired(), EqualTo("new", message="the two new passwords differ")]
    )


class ContactForm(FlaskForm):  # type: ignore[misc]
    nickname = StringField("Nickname", validators=[DataRequired(), NameRule("nickname")])
    phone = StringField("Phone", validators=[DataRequired(), Length(max=32)])
    first_name = StringField("First name", validators=[Optional(), Length(max=60)])
    last_name = StringField("Last name", validators=[Optional(), Length(max=60)])

    def save(self, config: Config, subscriber_id: int, contact: Contact | None) -> Contact | None:
        """Create or update the contact through the core and commit; ``None`` (rolled back) when refused."""
        before = snapshot_contact(contact)
        try:
            saved, _changes = provisioning.save_contact(
                db.session(),
                subscriber_id,
                nickname=self.nickname.data or "",
                phone=self.phone.data or "",
                default_country=config.numbering.default_country,
                first_name=self.first_name.data or "",
                last_name=self.last_name.data or "",
                contact=contact,
            )
        except ProvisioningError as exc:
            refuse(self, exc)
            return None
        audit("modify" if contact else "create", "contact", saved.id, before, snapshot_contact(saved))
        db.session().commit()
        return saved


class GroupForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(), NameRule("group name")])
    contacts = MultiCheckboxField("Users", coerce=int)
    numbers = TextAreaField("Other numbers (one per line)", validators=[Optional(), Length(max=2000)])

    def save(self, config: Config, subscriber_id: int, group: Group | None) -> Group | None:
        """Create or update the group through the core and commit; ``None`` (rolled back) when refused."""
        try:
            phones = numbers(self.numbers.data, config.numbering.default_country, config.conference.max_participants)
        except ValueError as exc:
            self.numbers.errors.append(str(exc))
            return None
        before = snapshot_group(group)
        members: list[Member] = []
        if group is not None:  # nested groups come from SMS (GC); the form keeps them
            members += [gm.member_group for gm in group.members if gm.member_group is not None]
        members += chosen(Contact, self.contacts.data, self.contacts.choices)
        members += phones
        try:
            saved = provisioning.save_group(
                db.session(), subscriber_id, name=self.name.data or "", members=members, group=group
            )
        except ProvisioningError as exc:
            refuse(self, exc)
            return None
        audit("modify" if group else "create", "group", saved.id, before, snapshot_group(saved))
        db.session().commit()
        return saved


class IcForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(), Length(max=60)])
    contacts = MultiCheckboxField("Users", coerce=int)
    groups = MultiCheckboxField("Groups", coerce=int)
    numbers = TextAreaField("Ad hoc numbers (one per line)", validators=[Optional(), Length(max=2000)])
    participant_sms = BooleanField("Text each participant the dial-back number and user PIN")

    def save(self, config: Config, ic: InstantConference) -> bool:
        """Save into ``ic`` through the core (members, ad hoc limit, name) and commit; rolled back when refused."""
        try:
            phones = numbers(self.numbers.data, config.numbering.default_country, config.conference.max_participants)
        except ValueError as exc:
            db.session().rollback()
            self.numbers.errors.append(str(exc))
            return False
        members = chosen(Contact, self.contacts.data, self.contacts.choices)
        members += chosen(Group, self.groups.data, self.groups.choices)
        members += phones
        before = snapshot_ic(ic)
        try:
            provisioning.update_ic(
                db.session(),
                ic,
                config,
                name=self.name.data or "",
                members=members,
                participant_sms=bool(self.participant_sms.data),
            )
        except ProvisioningError as exc:
            refuse(self, exc)
            return False
        db.session().flush()
        audit("modify", "instant_conference", ic.id, before, snapshot_ic(ic))
        db.session().commit()
        return True


class DialForm(FlaskForm):  # type: ignore[misc]
    number = StringField("Number", validators=[DataRequired(), Length(max=32)])


class SubscriberForm(FlaskForm):  # type: ignore[misc]
    company_id = SelectField("Company", coerce=int)
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    mobile = StringField("Mobile", validators=[DataRequired(), Length(max=32)])
    status = SelectField("Status", choices=[SelectChoice("active", "active"), SelectChoice("suspended", "suspended")])
    prepaid = BooleanField("Prepaid")
    username = StringField("Portal username (optional)", validators=[Optional(), Length(max=80)])
    password = PasswordField("Portal password", validators=[Optional(), Length(min=8, max=200)])


class CompanyForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    timezone = StringField("Time zone", default="UTC", validators=[DataRequired(), Length(max=64)])


class AccountForm(FlaskForm):  # type: ignore[misc]
    username = StringField("Username", validators=[DataRequired(), Length(max=80)])
    password = PasswordField("Password", validators=[Optional(), Length(min=8, max=200)])
    role = SelectField(
        "Role", choices=[SelectChoice("company_admin", "company admin"), SelectChoice("operator", "operator")]
    )
    company_id = SelectField("Company", coerce=int)
    active = BooleanField("Active", default=True)
    unlock = BooleanField("Clear lockout")


class DnisForm(FlaskForm):  # type: ignore[misc]
    number = StringField("Number", validators=[DataRequired(), Length(max=32)])
    kind = SelectField("Kind", choices=[SelectChoice("pool", "pool"), SelectChoice("common", "common")])
    position = StringField("Position (pool slot)", validators=[Optional(), Regexp(r"^\d{1,3}$")])


class RangeForm(FlaskForm):  # type: ignore[misc]
    """A date range in the query string (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    start = DateField("From", validators=[Optional()])
    end = DateField("To (inclusive)", validators=[Optional()])
    company_id = SelectField("Company", coerce=int, validators=[Optional()], validate_choice=False)
