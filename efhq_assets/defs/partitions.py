"""One dynamic partition per source video file, shared by every per-video asset."""

import dagster as dg

video_files = dg.DynamicPartitionsDefinition(name="video_files")
