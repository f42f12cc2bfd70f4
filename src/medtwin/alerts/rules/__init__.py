"""medtwin's alert rules, one module each (see :mod:`medtwin.alerts.rule` for the interface)."""
