"""Both emulators, seeded with a small IT service company, plus a matching okbx config.

Used by `okbx demo`, by the tests, and by anyone who wants to try a configuration safely.
Secrets go to the environment (`env()`), never into the YAML, exactly as in production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .bitrix24 import Bitrix24Emulator
from .http import EmulatorServer
from .okdesk import DEFAULT_STATUSES, OkdeskEmulator

OKDESK_TOKEN = "demo-okdesk-token-5f2a9c"
WEBHOOK_SECRET = "demo-webhook-secret-8d41b7"
HANDOFF = "to_programmers"
GROUP_ID = 42
DOCS_GROUP_ID = 43  # the document department's workgroup (routes)
SALES_PIPELINE = 10  # the sales department's deal pipeline (routes): its stage ids are C10:...
DOCS_STATUS, SALES_STATUS = "waiting_docs", "to_sales"  # the routes' custom Okdesk statuses


@dataclass
class People:
    bot: int = 0  # Okdesk employee okbx writes as
    consultant: int = 0  # Okdesk employee
    ok_ivan: int = 0  # Okdesk employee mapped from Bitrix24 user 7
    ok_olga: int = 0  # Okdesk employee mapped from Bitrix24 user 8
    client: int = 0  # Okdesk contact
    company: int = 0
    bx_ivan: int = 7  # Bitrix24 programmers
    bx_olga: int = 8
    bx_sergey: int = 9  # not in time.users: falls back to time.default_employee_id
    bx_sales: int = 10  # Bitrix24 salesperson (routes)


@dataclass
class World:
    okdesk: OkdeskEmulator
    bitrix: Bitrix24Emulator
    okdesk_server: EmulatorServer
    bitrix_server: EmulatorServer
    people: People = field(default_factory=People)
    _crm_romashka: int | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls, *, bitrix_rate: float | None = None, okdesk_rate: float | None = None, **emulator_options: Any
    ) -> World:
        okdesk_options = {k[7:]: v for k, v in emulator_options.items() if k.startswith("okdesk_")}
        bitrix_options = {k[7:]: v for k, v in emulator_options.items() if k.startswith("bitrix_")}
        custom = [("debt", "Долг"), (DOCS_STATUS, "Ожидает документы"), (SALES_STATUS, "Передана в продажи")]
        okdesk_options.setdefault("statuses", [*DEFAULT_STATUSES, *custom])  # the debt hold, the routes
        bitrix_options.setdefault("scopes", ("task", "tasks", "user", "sonet", "im", "crm", "disk"))  # disk: files
        okdesk = OkdeskEmulator(OKDESK_TOKEN, rate_limit_per_second=okdesk_rate, **okdesk_options)
        bitrix = Bitrix24Emulator(secret=WEBHOOK_SECRET, rate_per_second=bitrix_rate, **bitrix_options)
        world = cls(okdesk, bitrix, EmulatorServer(okdesk).start(), EmulatorServer(bitrix).start())
        world._seed()
        return world

    def _seed(self) -> None:
        p, ok, bx = self.people, self.okdesk, self.bitrix
        p.bot = ok.add_employee("okbx", "Bot", email="okbx@example.com", id=1)
        p.consultant = ok.add_employee("Anna", "Smirnova", email="anna@example.com")
        p.ok_ivan = ok.add_employee("Ivan", "Petrov", email="ivan@example.com")
        p.ok_olga = ok.add_employee("Olga", "Sidorova", email="olga@example.com")
        p.company = ok.add_company("Romashka LLC")
        p.client = ok.add_contact("Pavel", "Orlov", company_id=p.company)
        bx.add_user(p.bx_ivan, "Ivan", "Petrov", email="ivan@example.com")
        bx.add_user(p.bx_olga, "Olga", "Sidorova", email="olga@example.com")
        bx.add_user(p.bx_sergey, "Sergey", "Kuznetsov", email="sergey@example.com")
        bx.add_group(GROUP_ID, "Programmers (paid)", owner_id=p.bx_ivan)

    def billing_story(self) -> dict[str, int]:
        """Issue 10: the CRM side of the demo. Romashka's CRM company carries its Okdesk id
        (originatorId/originId); Vasilek is matched by its INN and owes an overdue invoice."""
        ok, crm = self.okdesk, self.bitrix.crm
        debtor = ok.add_company("Vasilek JSC", parameters={"inn": "7701234567"})
        romashka = self.crm_romashka()
        vasilek = crm.add_company("Vasilek", inn="7701234567")
        return {"debtor": debtor, "crm_romashka": romashka, "crm_vasilek": vasilek}

    def crm_romashka(self) -> int:
        """Romashka's CRM company, carrying its Okdesk id (originatorId/originId); made once."""
        if self._crm_romashka is None:
            origin = str(self.people.company)
            self._crm_romashka = self.bitrix.crm.add_company("ROMASHKA (CRM)", originator_id="okdesk", origin_id=origin)
        return self._crm_romashka

    def routes_story(self) -> dict[str, int]:
        """The routes' seed: a sales pipeline and a salesperson, the client as a CRM company and
        contact, the document department's group, and the client's equipment, two pieces under a
        service agreement and one outside it, plus an issue about the first."""
        ok, bx, p = self.okdesk, self.bitrix, self.people
        bx.add_user(p.bx_sales, "Maria", "Ivanova", email="maria.sales@example.com")
        bx.add_group(DOCS_GROUP_ID, "Document department")
        bx.deals.add_pipeline("Продажи", id=SALES_PIPELINE, sort=100)
        crm_contact = bx.deals.add_contact("Pavel", "Orlov", company_id=self.crm_romashka(), email="pavel@example.com")
        kit = ok.equipment
        kit.add_kind("printer", "Принтер")
        kit.add_kind("laptop", "Ноутбук")
        kit.add_manufacturer("hp", "HP")
        kit.add_model("lj_m404", "LaserJet M404", kind="printer", manufacturer="hp")
        agreement = kit.add_agreement("Договор 12/24", company_ids=[p.company])
        covered: dict[str, Any] = {"company_id": p.company, "agreement_ids": [agreement]}
        printer = kit.add_equipment(
            "printer", manufacturer="hp", model="lj_m404", serial_number="CNB1R12345", **covered
        )
        laptop = kit.add_equipment("laptop", inventory_number="INV-0042", serial_number="PF2ABCDE", **covered)
        spare = kit.add_equipment("printer", company_id=p.company, serial_number="CNB1R99999", inventory_number="")
        issue = ok.create_issue("Принтер печатает полосами", company_id=p.company, contact_id=p.client)
        kit.set_issue_equipment(issue, [printer])
        kit.set_issue_agreement(issue, agreement)
        return {
            "issue": issue, "agreement": agreement, "printer": printer, "laptop": laptop, "spare": spare,
            "crm_company": self.crm_romashka(), "crm_contact": crm_contact, "pipeline": SALES_PIPELINE,
        }  # fmt: skip

    def routes(self) -> list[dict[str, Any]]:
        """The three routes of the README's worked example, on this world (`routes_story` seeds it)."""
        p = self.people
        return [
            {
                "name": "programmers",
                "trigger": {"status": HANDOFF},
                "target": {"kind": "task", "group_id": GROUP_ID, "responsible_id": p.bx_ivan},
                "flows": {"bill": True},
                "finish": {"return_status": "opened"},
            },
            {
                "name": "documents",
                "trigger": {"status": DOCS_STATUS},
                "target": {
                    "kind": "task",
                    "group_id": DOCS_GROUP_ID,
                    "responsible_id": p.bx_olga,
                    "describe": "equipment",
                },
                "flows": {"copy_time": False, "result_comment": True},
                "finish": {"return_status": "previous"},
            },
            {
                "name": "sales",
                "trigger": {"status": SALES_STATUS},
                "target": {"kind": "deal", "pipeline_id": SALES_PIPELINE, "assigned_by_id": p.bx_sales},
                "finish": {"return_status": "opened"},
            },
        ]

    def close(self) -> None:
        self.okdesk_server.stop()
        self.bitrix_server.stop()

    # -- configuration -----------------------------------------------------------------------
    @property
    def webhook_url(self) -> str:
        return self.bitrix_server.url + self.bitrix.webhook_path

    def env(self) -> dict[str, str]:
        return {"OKDESK_API_TOKEN": OKDESK_TOKEN, "BITRIX24_WEBHOOK_URL": self.webhook_url}

    def config_dict(self, state_path: Path, **overrides: Any) -> dict[str, Any]:
        p = self.people
        config: dict[str, Any] = {
            "okdesk": {
                "url": self.okdesk_server.url,
                "api_token": "${OKDESK_API_TOKEN}",
                "bot_employee_id": p.bot,
                "handoff_status": HANDOFF,
                "return_status": "opened",
                "requests_per_second": 50,
            },
            "bitrix24": {
                "webhook_url": "${BITRIX24_WEBHOOK_URL}",
                "group_id": GROUP_ID,
                "responsible_id": p.bx_ivan,
                "created_by": self.bitrix.user_id,
                "done_statuses": [5],
                "requests_per_second": 50,
                "burst": 50,
            },
            "time": {"default_employee_id": p.bot, "users": {p.bx_ivan: p.ok_ivan, p.bx_olga: p.ok_olga}},
            "state": {"path": str(state_path)},
        }
        for section, values in overrides.items():
            if section == "routes":  # the routes say what okdesk.handoff_status and the group said
                config["routes"] = values
                for key in ("handoff_status", "return_status"):
                    config["okdesk"].pop(key, None)
                for key in ("group_id", "responsible_id"):
                    config["bitrix24"].pop(key, None)
                continue
            config.setdefault(section, {}).update(values)
        return config

    def write_config(self, directory: Path, **overrides: Any) -> Path:
        path = directory / "okbx.yaml"
        data = self.config_dict(directory / "okbx.sqlite3", **overrides)
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path
