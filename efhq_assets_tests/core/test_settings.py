"""A data root's settings (core/settings.py): one validated model; a refused value saves nothing."""

import json

import pytest

from efhq_assets.core import settings as s
from efhq_assets.core.storage import DataRoot


@pytest.fixture
def root(tmp_path):
    return DataRoot(tmp_path / "root").ensure()


def test_defaults_and_round_trip(root):
    assert s.load_settings(root) == s.Settings()
    s.update_settings(root, sampling="FPS:5", render_exports=True)
    loaded = s.load_settings(root)
    assert loaded.sampling == "fps:5" and loaded.render_exports is True
    # only what differs from the defaults is on disk; unsetting goes back to the default
    assert json.loads((root.catalog / s.SETTINGS_FILE).read_text()) == {"render_exports": True, "sampling": "fps:5"}
    s.update_settings(root, sampling=None)
    assert s.load_settings(root).sampling == "all"


@pytest.mark.parametrize("name, value, message", [
    ("detector", "mtcnnx", "detector must be one of"),
    ("sampling", "fps:-1", "sampling"),
    ("pose_camera", "f:0", "pose camera must be"),
    ("verification_pairs_per_protocol", 0, "greater than 0"),
    ("detect_stride", 0, "greater than or equal to 1"),
    ("render_exports", "perhaps", "valid boolean"),
    ("samplign", "all", "unknown setting"),
])
def test_a_wrong_value_is_refused_and_nothing_is_saved(root, name, value, message):
    s.update_settings(root, pose_camera="weak")
    before = (root.catalog / s.SETTINGS_FILE).read_bytes()
    with pytest.raises(s.SettingsError, match=message):
        s.update_settings(root, **{name: value})
    assert (root.catalog / s.SETTINGS_FILE).read_bytes() == before


def test_a_hand_edited_bad_file_fails_with_its_path(root):
    (root.catalog / s.SETTINGS_FILE).write_text(json.dumps({"detector": "nope"}))
    with pytest.raises(s.SettingsError, match=r"settings\.json: detector"):
        s.load_settings(root)


def test_command_line_values_are_typed():
    assert s.parse_value("render_exports", "off") is False
    assert s.parse_value("render_exports", "Yes") is True
    assert s.validate({"verification_pairs_per_protocol": s.parse_value("verification_pairs_per_protocol", "500")}) \
        .verification_pairs_per_protocol == 500
    with pytest.raises(s.SettingsError, match="unknown setting"):
        s.parse_value("nope", "1")


def test_every_setting_is_documented():
    for item in s.describe():
        assert item["description"] and len(item["description"]) > 20, item["name"]


def test_the_readme_lists_every_setting():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in s.Settings.model_fields if f"| `{name}` |" not in readme]
    assert not missing, f"README's settings table lacks {missing}"
