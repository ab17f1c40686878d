"""Who may use each endpoint, and which ids its URL arguments take. Tests fail on an endpoint not listed."""

from __future__ import annotations

from typing import Any

from tests.web.portal_world import Tenant, World

OP, ADMIN, USER = "op", "admin", "user"
ALL = frozenset({OP, ADMIN, USER})
STAFF = frozenset({OP, ADMIN})
OPERATOR = frozenset({OP})
ANYONE = frozenset({"anonymous", OP, ADMIN, USER})

# endpoint -> roles allowed
ROUTES: dict[str, frozenset[str]] = {
    "admin.account_delete": OPERATOR,
    "admin.account_edit": OPERATOR,
    "admin.account_new": OPERATOR,
    "admin.accounts": OPERATOR,
    "admin.billing": OPERATOR,
    "admin.billing_csv": OPERATOR,
    "admin.companies": OPERATOR,
    "admin.company_delete": OPERATOR,
    "admin.company_edit": OPERATOR,
    "admin.company_new": OPERATOR,
    "admin.dashboard": OPERATOR,
    "admin.dnis": OPERATOR,
    "admin.dnis_delete": OPERATOR,
    "admin.dnis_load": OPERATOR,
    "admin.status": OPERATOR,
    "admin.trunks": OPERATOR,
    "admin.tokens": OPERATOR,
    "admin.token_revoke": OPERATOR,
    "admin.audit": OPERATOR,
    "admin.audit_csv": OPERATOR,
    "api.live_events": ALL,
    "api.live_json": ALL,
    "auth.index": ALL,
    "auth.login": ANYONE,
    "auth.logout": ALL,
    "auth.password": ALL,
    "billing.active": STAFF,
    "billing.balances": STAFF,
    "billing.company_settings": OPERATOR,
    "billing.company_topup": OPERATOR,
    "billing.destinations": OPERATOR,
    "billing.disconnect_leg": STAFF,
    "billing.disconnect_run": STAFF,
    "billing.lock": STAFF,
    "billing.priced_csv": STAFF,
    "billing.rates": STAFF,
    "billing.rates_csv": STAFF,
    "billing.rates_upload": OPERATOR,
    "billing.statement": ALL,
    "billing.statement_csv": ALL,
    "billing.statement_pdf": ALL,
    "billing.subscriber_limits": STAFF,
    "billing.topup": STAFF,
    "company.cdrs": STAFF,
    "company.cdrs_csv": STAFF,
    "company.dashboard": STAFF,
    "company.subscriber_delete": STAFF,
    "company.subscriber_edit": STAFF,
    "company.subscriber_new": STAFF,
    "company.subscribers": STAFF,
    "company.usage": STAFF,
    "company.usage_csv": STAFF,
    "static": ANYONE,
    "subscriber.group_delete": ALL,
    "subscriber.group_edit": ALL,
    "subscriber.group_new": ALL,
    "subscriber.groups": ALL,
    "subscriber.help_page": ALL,
    "subscriber.history": ALL,
    "subscriber.home": ALL,
    "subscriber.ic_delete": ALL,
    "subscriber.ic_detail": ALL,
    "subscriber.ic_edit": ALL,
    "subscriber.ic_launch": ALL,
    "subscriber.ic_new": ALL,
    "subscriber.ic_regenerate": ALL,
    "subscriber.ics": ALL,
    "subscriber.live_dial": ALL,
    "subscriber.live_end": ALL,
    "subscriber.live_kick": ALL,
    "subscriber.live_list": ALL,
    "subscriber.live_lock": ALL,
    "subscriber.live_mute": ALL,
    "subscriber.live_recording": ALL,
    "subscriber.live_view": ALL,
    "subscriber.recording_audio": ALL,
    "subscriber.recording_download": ALL,
    "subscriber.recordings": ALL,
    "subscriber.run_report": ALL,
    "subscriber.run_report_csv": ALL,
    "subscriber.user_delete": ALL,
    "subscriber.user_edit": ALL,
    "subscriber.user_new": ALL,
    "subscriber.users": ALL,
}


def ids(tenant: Tenant, world: World) -> dict[str, list[int]]:
    """URL argument -> the tenant's object ids to try (each run id is tried live and finished)."""
    return {
        "sid": [tenant.subscriber_id],
        "contact_id": [tenant.contact_id],
        "group_id": [tenant.group_id],
        "ic_id": [tenant.ic_id],
        "run_id": [tenant.live_run_id, tenant.run_id],
        "leg_id": [tenant.live_leg_ids[0], tenant.leg_id],
        "rec_id": [tenant.recording_id],
        "company_id": [tenant.company_id],
        "account_id": [tenant.admin_account_id, tenant.subscriber_account_id],
        "dnis_id": [world.dnis_id],
        "token_id": [1],
    }


def portal_rules(app: Any) -> list[Any]:
    """The portal's routes (session logins); the REST API's token routes (``rest.*``) have their own tests."""
    return [r for r in app.url_map.iter_rules() if not r.endpoint.startswith("rest.")]
