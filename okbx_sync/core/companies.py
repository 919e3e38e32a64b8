"""Matching Okdesk client companies to Bitrix24 CRM companies, both ways, never by guessing.

One floor below the wings, so that billing (the invoice's company, a debtor's issues) and the
sales route (the deal's company) match alike.

Order (issue 10 item 2): the configured `billing.company_map`; else the CRM company whose
`originatorId`/`originId` name the Okdesk company (crm-billing.md §2.2: documented fields, the
use is inferred, so the originator value is configurable); else the INN, kept in an Okdesk
company parameter (`billing.inn_parameter`) and in the CRM requisites (`RQ_INN`); else the
exact name.  Each step must give exactly one company; two candidates are a failure, not a pick.
"""

from __future__ import annotations

from ..clients.bitrix24_crm import CrmClient
from ..clients.okdesk import OkdeskClient
from ..config import BillingConfig
from ..model import Company


class Unmatched(Exception):
    """No single CRM company for an Okdesk company; the message says what was tried."""


class CompanyMatcher:
    def __init__(self, okdesk: OkdeskClient, crm: CrmClient, billing: BillingConfig | None) -> None:
        self.okdesk, self.crm = okdesk, crm
        self.company_map = dict(billing.company_map) if billing else {}
        self.origin_source = billing.origin_source if billing else "okdesk"
        self.inn_parameter = billing.inn_parameter if billing else None
        self._okdesk_companies: dict[int, Company] | None = None

    def okdesk_companies(self) -> dict[int, Company]:
        if self._okdesk_companies is None:
            self._okdesk_companies = {c.id: c for c in self.okdesk.list_companies()}
        return self._okdesk_companies

    def _inn(self, company: Company | None) -> str | None:
        if company is None or not self.inn_parameter:
            return None
        value = company.parameter(self.inn_parameter)
        return str(value).strip() if value not in (None, "") else None

    def crm_company(self, okdesk_company_id: int) -> int:
        """The CRM company billed for this Okdesk company, or Unmatched."""
        if okdesk_company_id in self.company_map:
            return self.company_map[okdesk_company_id]
        origin = {"=originatorId": self.origin_source, "=originId": str(okdesk_company_id)}
        by_origin = [c.id for c in self.crm.companies(origin) if c.origin_id == str(okdesk_company_id)]
        if by_origin:
            return _one(by_origin, f"originId {okdesk_company_id}")
        company = self.okdesk_companies().get(okdesk_company_id)
        if (inn := self._inn(company)) is not None:
            by_inn = self.crm.companies_by_inn(inn)
            if by_inn:
                return _one(by_inn, f"INN {inn}")
        if company is not None:
            by_name = [c.id for c in self.crm.companies({"=title": company.name}) if c.title == company.name]
            if by_name:
                return _one(by_name, f"the name '{company.name}'")
        name = f" '{company.name}'" if company else ""
        inn_tried = f", no requisite with its INN ({self.inn_parameter})" if self.inn_parameter else ""
        raise Unmatched(
            f"no CRM company for Okdesk company {okdesk_company_id}{name}: not in billing.company_map, "
            f"no originId{inn_tried}, no company with exactly this name"
        )

    def okdesk_companies_for(self, crm_company_id: int) -> list[int]:
        """The Okdesk companies a CRM company stands for (the same rules, read backwards)."""
        mapped = [ok for ok, crm in self.company_map.items() if crm == crm_company_id]
        if mapped:
            return mapped
        company = self.crm.company(crm_company_id)
        if company is None:
            return []
        if company.originator_id == self.origin_source and (company.origin_id or "").isdigit():
            return [int(company.origin_id or 0)]
        okdesk = self.okdesk_companies()
        if self.inn_parameter:
            inns = set(self.crm.inns(crm_company_id))
            by_inn = [c.id for c in okdesk.values() if self._inn(c) in inns]
            if by_inn:
                return by_inn
        return [c.id for c in okdesk.values() if c.name == company.title]


def _one(ids: list[int], how: str) -> int:
    unique = sorted(set(ids))
    if len(unique) > 1:
        raise Unmatched(
            f"{how} matches {len(unique)} CRM companies ({', '.join(map(str, unique))}); map it in billing.company_map"
        )
    return unique[0]
