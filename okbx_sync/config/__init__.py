"""okbx.yaml: its sections, declared once (sections.py), and their loading (load.py)."""

from __future__ import annotations

from .load import (
    MAX_CONFIG_BYTES,
    MAX_NESTING,
    config_path,
    insecure_http_problem,
    is_loopback,
    load_config,
    parse_config,
    parse_yaml,
)
from .routes import PREVIOUS, FinishConfig, FlowsConfig, RouteConfig, TargetConfig, TriggerConfig
from .sections import (
    OPT_IN_SECTIONS,
    OPTIONAL_SECTIONS,
    SECTIONS,
    BillingConfig,
    Bitrix24Config,
    CommentsConfig,
    Config,
    DebtConfig,
    FilesConfig,
    OkdeskConfig,
    StateConfig,
    SyncConfig,
    TimeConfig,
    keys_of,
)
from .spec import REQUIRED, Key

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_NESTING",
    "OPTIONAL_SECTIONS",
    "OPT_IN_SECTIONS",
    "PREVIOUS",
    "REQUIRED",
    "SECTIONS",
    "BillingConfig",
    "Bitrix24Config",
    "CommentsConfig",
    "Config",
    "DebtConfig",
    "FilesConfig",
    "FinishConfig",
    "FlowsConfig",
    "Key",
    "OkdeskConfig",
    "RouteConfig",
    "StateConfig",
    "SyncConfig",
    "TargetConfig",
    "TimeConfig",
    "TriggerConfig",
    "config_path",
    "insecure_http_problem",
    "is_loopback",
    "keys_of",
    "load_config",
    "parse_config",
    "parse_yaml",
]
