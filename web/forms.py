"""Flask-WTF forms (every one carries the CSRF token; plain buttons post the token from ``csrf_token()``,
checked by the app-wide ``CSRFProtect``)."""

from __future__ import annotations

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

from bridge.provisioning import ProvisioningError
from bridge.provisioning.names import check_name


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


def show_error(form: FlaskForm, exc: ProvisioningError) -> bool:
    """Put the core's refusal under the field it names; ``False`` when the form has no such field (the
    caller then flashes it)."""
    field = getattr(form, exc.field, None) if exc.field else None
    if field is None or not hasattr(field, "errors"):
        return False
    field.errors = [*field.errors, exc.message]
    return True


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


class GroupForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(), NameRule("group name")])
    contacts = MultiCheckboxField("Users", coerce=int)
    numbers = TextAreaField("Other numbers (one per line)", validators=[Optional(), Length(max=2000)])


class IcForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(), Length(max=60)])
    contacts = MultiCheckboxField("Users", coerce=int)
    groups = MultiCheckboxField("Groups", coerce=int)
    numbers = TextAreaField("Ad hoc numbers (one per line)", validators=[Optional(), Length(max=2000)])
    participant_sms = BooleanField("Text each participant the dial-back number and user PIN")


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
