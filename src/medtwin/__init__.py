"""medtwin: healthcare digital twins.

Layers (see docs/architecture.md): interfaces (cli, api, web) -> services (twin, stream, alerts)
-> domain (record, physiology, solve, pharmaco) and infra (store, security, config).
"""

__version__ = "0.1.0"
