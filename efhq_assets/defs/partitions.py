"""One dynamic partition per source video file, shared by every per-video asset."""

import dagster as dg

video_files = dg.DynamicPartitionsDefinition(name="video_files")

# Unpartitioned assets (identities, card, manifest, splits) refresh on this cadence, and only when
# something upstream changed since the last tick: "a schedule that refreshes what changed".
REFRESH_CRON = "*/15 * * * *"
refresh_when_upstream_changed = dg.AutomationCondition.on_cron(REFRESH_CRON)
