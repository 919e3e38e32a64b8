"""`okbx doctor` checks for billing and the debt hold (issue 10).

The webhook's `crm` scope, the invoice pipeline and its final stages (semantics S and F), the
debt status in Okdesk, and the company matching of the companies with open handoffs.
"""

from __future__ import annotations

from ..clients.bitrix24 import Bitrix24Client
from ..clients.bitrix24_crm import CrmClient
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..core.companies import CompanyMatcher, Unmatched
from ..errors import OkbxError
from ..state.store import Store
from .base import Check, Context, check_group

MAX_MATCHED = 50  # issues read for the matching check; the rest is checked by sync itself


@check_group(50, "Billing", applies=lambda ctx: ctx.config.billing is not None or ctx.config.debt is not None)
def billing_group(ctx: Context) -> list[Check]:
    return billing_checks(ctx.config, ctx.okdesk, ctx.bitrix)


def billing_checks(config: Config, okdesk: OkdeskClient, bitrix: Bitrix24Client) -> list[Check]:
    checks: list[Check] = []
    scopes = bitrix.scopes()
    if "crm" not in scopes:
        return [
            Check(
                "Bitrix24 crm scope",
                False,
                f"the webhook lacks the crm scope (it has: {', '.join(scopes) or 'none'}); billing checks skipped",
                "edit the incoming webhook in Bitrix24 (Developer resources) and tick CRM (crm)",
            )
        ]
    checks.append(Check("Bitrix24 crm scope", True, "the webhook has the crm scope"))
    crm = CrmClient(bitrix)
    checks.append(_pipeline_check(config, crm))
    if config.debt is not None:
        checks.append(_debt_status_check(config, okdesk))
    if config.billing is not None:
        checks.append(_matching_check(config, okdesk, crm))
        checks.append(_rate_check(config))
        checks.append(_currency_check(config, crm))
    return checks


ABSURD_RATE = 100_000  # per hour: a typo (an extra zero or three) more likely than a price


def _rate_check(config: Config) -> Check:
    """A zero or absurd rate makes real invoices: passes, with a warning to look (issue 16)."""
    assert config.billing is not None
    rates = {"billing.default_rate": config.billing.default_rate}
    rates |= {f"billing.rates[{user}]": rate for user, rate in sorted(config.billing.rates.items())}
    odd = [f"{key} is {rate:g}" for key, rate in rates.items() if rate == 0 or rate > ABSURD_RATE]
    if odd:
        detail = "; ".join(odd) + f" (an invoice at 0, or above {ABSURD_RATE:,} an hour, is rarely meant)"
        return Check("Billing rates", True, detail, "check the rates in billing.rates and billing.default_rate", True)
    return Check("Billing rates", True, f"{len(rates)} rates, all above 0 and at most {ABSURD_RATE:,} an hour")


def _currency_check(config: Config, crm: CrmClient) -> Check:
    assert config.billing is not None
    currency = config.billing.currency
    try:
        known = crm.currencies()
    except (OkbxError, ValueError) as error:
        return Check("Billing currency", True, f"cannot list the CRM's currencies ({error})", warn=True)
    if currency in known:
        return Check("Billing currency", True, f"billing.currency {currency!r} is a currency of the CRM")
    return Check(
        "Billing currency",
        True,
        f"billing.currency {currency!r} is not among the CRM's currencies ({', '.join(known) or 'none'})",
        "set billing.currency to one of them, or add the currency in the CRM's settings",
        warn=True,
    )


def _pipeline_check(config: Config, crm: CrmClient) -> Check:
    configured = config.billing.category_id if config.billing else None
    category = configured if configured is not None else crm.default_category()
    stages = crm.stages(category)
    kinds = {s.semantics for s in stages}
    if not stages or not {"S", "F"} <= kinds:
        return Check(
            "Bitrix24 invoice pipeline",
            False,
            f"pipeline {category} has {len(stages)} stages, none with semantics {'S' if 'S' not in kinds else 'F'}",
            "set billing.category_id to the smart-invoice pipeline (crm.category.list, entityTypeId 31)",
        )
    paid = ", ".join(s.id for s in stages if s.semantics == "S")
    return Check("Bitrix24 invoice pipeline", True, f"pipeline {category}: {len(stages)} stages; paid = {paid}")


def _debt_status_check(config: Config, okdesk: OkdeskClient) -> Check:
    assert config.debt is not None
    statuses = dict(okdesk.list_statuses())
    code = config.debt.status
    if code not in statuses:
        return Check(
            "Okdesk debt status",
            False,
            f"debt.status {code!r} is not a status code of this account (known: {', '.join(sorted(statuses))})",
            "create the status in Okdesk (Settings → Issues → Statuses) or set debt.status to its code",
        )
    return Check(
        "Okdesk debt status",
        True,
        f"{code!r} exists ({statuses[code]}); okbx cannot read the allowed transitions: allow the changes "
        "from your working statuses to it and back in Okdesk's status settings",
    )


def _matching_check(config: Config, okdesk: OkdeskClient, crm: CrmClient) -> Check:
    try:
        store = Store(config.state.path, read_only=True)  # doctor writes nothing: not even a new store
    except OkbxError:  # its cause is the State store check's; the other billing checks still count
        return Check(
            "Company matching", True, "not checked: the state store cannot be read (see State store)", warn=True
        )
    try:
        active = [link.issue_id for link in store.links().values() if link.state == "active"][:MAX_MATCHED]
    finally:
        store.close()
    matcher = CompanyMatcher(okdesk, crm, config.billing)
    companies: dict[int, str] = {}
    for issue_id in active:
        try:
            issue = okdesk.get_issue(issue_id)
        except OkbxError:
            continue
        if issue.company_id is not None:
            companies[issue.company_id] = issue.company or str(issue.company_id)
    problems = []
    for company_id, name in sorted(companies.items()):
        try:
            matcher.crm_company(company_id)
        except Unmatched as why:
            problems.append(f"{name}: {why}")
    if problems:
        return Check(
            "Company matching",
            False,
            "; ".join(problems),
            "add the companies to billing.company_map, or give the CRM company originId/INN/the same name",
        )
    return Check("Company matching", True, f"all {len(companies)} companies with open handoffs match a CRM company")
