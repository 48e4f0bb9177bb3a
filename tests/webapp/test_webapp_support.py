"""The app's small helpers: settings, sample listing, drawing, and the launcher's flags."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from webapp.__main__ import APP_PATH, streamlit_argv
from webapp.config import DEFAULT_SAMPLES_DIR, Settings, SettingsError, get_settings
from webapp.drawing import Annotation, color_for, draw_boxes, load_image, text_color_on
from webapp.samples import content_type, list_samples

# --- settings -------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = get_settings({})
    assert settings.gateway_url == "http://127.0.0.1:8080"
    assert settings.evidently_url == "http://127.0.0.1:8082"
    assert settings.api_key is None
    assert settings.samples_dir == DEFAULT_SAMPLES_DIR
    assert DEFAULT_SAMPLES_DIR == Path(__file__).resolve().parents[2] / "data" / "samples"


def test_settings_from_env(tmp_path: Path) -> None:
    settings = get_settings(
        {
            "WEBAPP_GATEWAY_URL": " https://gw.example/ ",
            "WEBAPP_API_KEY": "k",
            "WEBAPP_SAMPLES_DIR": str(tmp_path),
            "WEBAPP_TIMEOUT_S": "3.5",
        }
    )
    assert settings.gateway_url == "https://gw.example"
    assert settings.api_key == "k"
    assert settings.samples_dir == tmp_path
    assert settings.timeout_s == 3.5
    assert get_settings({"WEBAPP_API_KEY": "  "}).api_key is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WEBAPP_GATEWAY_URL": "gateway:8080"}, "WEBAPP_GATEWAY_URL"),
        ({"WEBAPP_EVIDENTLY_URL": "ftp://x"}, "WEBAPP_EVIDENTLY_URL"),
        ({"WEBAPP_TIMEOUT_S": "soon"}, "WEBAPP_TIMEOUT_S"),
        ({"WEBAPP_CONNECT_TIMEOUT_S": "0"}, "WEBAPP_CONNECT_TIMEOUT_S"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        get_settings(env)


def test_settings_class_reads_the_process_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WEBAPP_TIMEOUT_S", "7")
    monkeypatch.setenv("WEBAPP_SAMPLES_DIR", str(tmp_path))
    monkeypatch.setenv("WEBAPP_API_KEY", "")
    monkeypatch.setenv("WEBAPP_PORT", "9000")  # the launcher's, not a setting: ignored
    settings = get_settings()
    assert settings == Settings(timeout_s=7.0, samples_dir=tmp_path)
    assert (settings.timeout_s, settings.samples_dir, settings.api_key) == (7.0, tmp_path, None)
    monkeypatch.setenv("WEBAPP_TIMEOUT_S", "601")
    with pytest.raises(SettingsError, match="WEBAPP_TIMEOUT_S must be between 0 and 600"):
        get_settings()


def test_misconfigured_app_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WEBAPP_GATEWAY_URL", "not-a-url")
    at = AppTest.from_file(APP_PATH, default_timeout=20).run()
    assert not at.exception
    assert "WEBAPP_GATEWAY_URL" in at.error[0].value


# --- samples --------------------------------------------------------------------------------


def test_list_samples_filters_and_sorts(tmp_path: Path) -> None:
    for name in ("b.PNG", "a.jpg", "c.webp", "d.bmp", "e.jpeg", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    names = [p.name for p in list_samples(tmp_path)]
    assert names == ["a.jpg", "b.PNG", "c.webp", "d.bmp", "e.jpeg"]


def test_list_samples_missing_or_not_a_folder(tmp_path: Path) -> None:
    assert list_samples(tmp_path / "missing") == []
    (tmp_path / "file").write_text("x")
    assert list_samples(tmp_path / "file") == []


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("a.JPG", "image/jpeg"),
        ("a.jpeg", "image/jpeg"),
        ("a.png", "image/png"),
        ("a.webp", "image/webp"),
        ("a.bmp", "image/bmp"),
        ("a.gif", "application/octet-stream"),
    ],
)
def test_content_type(name: str, mime: str) -> None:
    assert content_type(name) == mime


# --- drawing --------------------------------------------------------------------------------


def test_draw_boxes_outlines_in_class_colour_and_leaves_input_alone() -> None:
    image = Image.new("RGB", (200, 100), (0, 0, 0))
    out = draw_boxes(image, [Annotation((50, 40, 150, 90), "square 0.90", 1)])
    assert out is not image and out.size == (200, 100)
    assert out.getpixel((100, 89)) == color_for(1)  # bottom edge of the box
    assert out.getpixel((100, 65)) == (0, 0, 0)  # inside stays untouched
    assert image.getpixel((100, 89)) == (0, 0, 0)


def test_draw_boxes_scales_to_source_size_and_handles_top_edge() -> None:
    image = Image.new("RGB", (100, 50))
    # Coordinates of a 200x100 original: the box lands at half scale.
    out = draw_boxes(image, [Annotation((0, 0, 100, 60), "top", 2)], source_size=(200, 100))
    assert out.getpixel((49, 29)) == color_for(2)
    assert out.getpixel((70, 40)) == (0, 0, 0)


def test_label_text_is_readable_on_its_colour() -> None:
    assert text_color_on((255, 255, 0)) == (0, 0, 0)
    assert text_color_on((0, 0, 128)) == (255, 255, 255)


def test_color_is_stable_per_class() -> None:
    assert color_for(0) == color_for(0)
    assert len({color_for(k) for k in (0, 1, 2)}) > 1
    assert color_for(12) == color_for(0)  # the palette wraps around


def _jpeg_rotated_exif(size: tuple[int, int]) -> bytes:
    image = Image.new("RGB", size)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def test_load_image_follows_the_gateways_orientation() -> None:
    data = _jpeg_rotated_exif((40, 20))
    assert load_image(data).size == (40, 20)
    assert load_image(data, (40, 20)).size == (40, 20)
    assert load_image(data, (20, 40)).size == (20, 40)  # the gateway measured the rotated one


def test_load_image_converts_to_rgb() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4)).save(buffer, format="PNG")
    assert load_image(buffer.getvalue()).mode == "RGB"


# --- launcher -------------------------------------------------------------------------------


def test_launcher_flags() -> None:
    argv = streamlit_argv(["--theme.base", "dark"], env={})
    assert argv[:2] == ["run", str(APP_PATH)]
    flags = dict(zip(argv[2:-2:2], argv[3:-2:2], strict=True))
    assert flags == {
        "--browser.gatherUsageStats": "false",
        "--browser.serverAddress": "localhost",
        "--client.toolbarMode": "minimal",
        "--server.headless": "true",
        "--server.port": "8081",
        "--server.address": "127.0.0.1",
    }
    assert argv[-2:] == ["--theme.base", "dark"]  # extra flags last, so they win


def test_launcher_env_overrides() -> None:
    argv = streamlit_argv(env={"WEBAPP_PORT": "9000", "WEBAPP_ADDRESS": "0.0.0.0"})
    assert argv[argv.index("--server.port") + 1] == "9000"
    assert argv[argv.index("--server.address") + 1] == "0.0.0.0"
    with pytest.raises(SystemExit, match="WEBAPP_PORT"):
        streamlit_argv(env={"WEBAPP_PORT": "80a"})


def test_config_toml_turns_usage_stats_off() -> None:
    import tomllib

    config = tomllib.loads((APP_PATH.parent / ".streamlit" / "config.toml").read_text())
    assert config["browser"] == {"gatherUsageStats": False, "serverAddress": "localhost"}
    assert config["server"] == {"headless": True, "port": 8081}
    assert config["client"] == {"toolbarMode": "minimal"}
