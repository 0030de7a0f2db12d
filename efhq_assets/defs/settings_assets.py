"""The data root's settings as external assets, so Dagster's own staleness sees a setting change.

Each setting that a stage reads (core/stages.py) is an external asset `setting_<name>` (group `settings`)
that the stage depends on. Its data version is a fingerprint of the value, reported as a runless
materialization (the value was set) by `efhq build`, `efhq settings set/unset` and each sensor tick,
whenever the value differs from the last one reported. (A runless observation would do as well in
principle, but on the SQLite instance the UI's stale-status resolver does not find the latest
observation of an unpartitioned asset and reads every setting as changed.) A stage materialized before the change then shows in the UI as stale
("has a new dependency data version"), exactly where `efhq build --dry-run` plans it.
"""

from __future__ import annotations

import dagster as dg

from efhq_assets.core import stages
from efhq_assets.core.fingerprints import fingerprint
from efhq_assets.core.settings import Settings

DATA_VERSION_TAG = "dagster/data_version"


def setting_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(f"setting_{name}")


def setting_version(settings: Settings, name: str) -> str:
    return fingerprint(name, getattr(settings, name))


SETTING_SPECS = [
    dg.AssetSpec(setting_key(name), group_name="settings", kinds={"json"},
                 description=f"The data root's `{name}` setting (catalog/settings.json; `efhq settings`): "
                             f"{Settings.model_fields[name].description}")
    for name in stages.SETTINGS_READ
]


def changed_observations(instance: dg.DagsterInstance, settings: Settings) -> list[dg.AssetMaterialization]:
    """An event for each setting whose value differs from the data version last reported for it."""
    out = []
    for name in stages.SETTINGS_READ:
        version = setting_version(settings, name)
        record = instance.get_latest_data_version_record(setting_key(name), is_source=False)
        event = record.event_log_entry.asset_materialization if record else None
        last = (event.tags or {}).get(DATA_VERSION_TAG) if event else None
        if last != version:
            out.append(dg.AssetMaterialization(asset_key=setting_key(name), tags={DATA_VERSION_TAG: version},
                                               metadata={"value": str(getattr(settings, name))}))
    return out


def observe_settings(instance: dg.DagsterInstance, settings: Settings) -> int:
    """Record the settings' current data versions in the instance (the CLI's way; the sensor returns them)."""
    events = changed_observations(instance, settings)
    for event in events:
        instance.report_runless_asset_event(event)
    return len(events)
