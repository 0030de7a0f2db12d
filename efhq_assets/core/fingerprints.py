"""The one fingerprint function: a short, stable hash of JSON-able parts.

Stage fingerprints (`stages.stage_fingerprint`), the review state, the unpartitioned stages' staleness and
the verification render keys are all this hash, so two callers that hash the same parts agree.
"""

from __future__ import annotations

import hashlib
import json


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
