"""Where alert rules are found: Python entry points of the group ``medtwin.alert_rules`` (so a separate
package can add a rule: ``[project.entry-points."medtwin.alert_rules"] my-rule = "pkg.module:MyRule"``,
a class or factory called without arguments) and programmatic :func:`register`.

medtwin's own four rules are declared as entry points in its ``pyproject.toml`` and, so that a source
checkout without an installed distribution still works, also found from :data:`BUILTIN` when no entry point
of theirs is present.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Final

from medtwin.alerts.rule import AlertKind, AlertRule

__all__ = ["BUILTIN", "GROUP", "alert_kinds", "create_rules", "generation", "register", "rule_names",
           "unregister"]

log = logging.getLogger("medtwin.alerts")
GROUP: Final = "medtwin.alert_rules"
#: medtwin's rules (name -> "module:factory"), also declared as entry points.
BUILTIN: Final = {
    "glucose-episodes": "medtwin.alerts.rules.glucose_episodes:GlucoseEpisodesRule",
    "predicted-hypo": "medtwin.alerts.rules.predicted_hypo:PredictedHypoRule",
    "news2": "medtwin.alerts.rules.news2:News2Rule",
    "hr-deviation": "medtwin.alerts.rules.heart_rate:HeartRateDeviationRule",
}

Factory = Callable[[], Any]
_lock = threading.Lock()
_registered: dict[str, Factory] = {}
_generation = 0  # changes with every register/unregister (entry points change only with a new process)


def _load(target: str) -> Factory:
    module, _, attr = target.partition(":")
    found: Factory = getattr(import_module(module), attr)
    return found


def _factories() -> dict[str, Factory]:
    out: dict[str, Factory] = {}
    for ep in entry_points(group=GROUP):
        try:
            out[ep.name] = ep.load()
        except Exception:  # a broken third-party plug-in must not take the engine down
            log.exception("alert rule entry point %r could not be loaded; skipped", ep.name)
    for name, target in BUILTIN.items():
        out.setdefault(name, _load(target))
    with _lock:
        out.update(_registered)
    return out


def register(name: str, factory: Factory) -> None:
    """Add (or replace) a rule: ``factory()`` returns an :class:`~medtwin.alerts.rule.AlertRule` whose
    ``info.name`` is ``name``."""
    global _generation
    with _lock:
        _registered[name] = factory
        _generation += 1


def unregister(name: str) -> None:
    global _generation
    with _lock:
        _registered.pop(name, None)
        _generation += 1


def generation() -> int:
    """A number that changes whenever the set of rules may have (for caches of what is derived from it)."""
    return _generation


def create_rules() -> list[AlertRule]:
    """One new instance of every rule, in name order; each checked (:meth:`RuleInfo.check`)."""
    rules: list[AlertRule] = []
    for name, factory in sorted(_factories().items()):
        rule = factory()
        if not isinstance(rule, AlertRule):
            raise TypeError(f"alert rule {name!r}: {rule!r} does not implement AlertRule")
        if rule.info.name != name:
            raise ValueError(f"alert rule {name!r}: its info.name is {rule.info.name!r}")
        rule.info.check()
        rules.append(rule)
    kinds = [kind.name for rule in rules for kind in rule.info.alerts]
    if len(kinds) != len(set(kinds)):
        raise ValueError(f"alert kinds are not unique across rules: {sorted(kinds)}")
    return rules


def rule_names() -> tuple[str, ...]:
    return tuple(sorted(_factories()))


def alert_kinds() -> tuple[AlertKind, ...]:
    """Every alert kind of every rule (what ``Alert.rule`` may be)."""
    return tuple(kind for rule in create_rules() for kind in rule.info.alerts)
