"""The clients of one run, built from the configuration and sharing one request budget."""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import REAL_CLOCK, Clock
from ..config import Config
from ..secrets import Redactor
from .bitrix24 import Bitrix24Client
from .bitrix24_crm import CrmClient
from .limits import RequestBudget
from .okdesk import OkdeskClient


@dataclass
class Clients:
    okdesk: OkdeskClient
    bitrix: Bitrix24Client
    budget: RequestBudget

    @classmethod
    def build(cls, config: Config, redactor: Redactor, clock: Clock = REAL_CLOCK) -> Clients:
        budget = RequestBudget(
            config.sync.max_requests_per_cycle, seconds=config.sync.max_seconds, monotonic=clock.monotonic
        )
        backoff_seconds = config.sync.backoff_seconds
        return cls(
            OkdeskClient(config.okdesk, redactor, budget=budget, backoff_seconds=backoff_seconds, clock=clock),
            Bitrix24Client(config.bitrix24, redactor, budget=budget, backoff_seconds=backoff_seconds, clock=clock),
            budget,
        )

    @property
    def crm(self) -> CrmClient:
        return CrmClient(self.bitrix)

    def requests_sent(self) -> dict[str, int]:
        return {"okdesk": self.okdesk.requests_sent, "bitrix24": self.bitrix.requests_sent}

    def close(self) -> None:
        self.okdesk.close()
        self.bitrix.close()
