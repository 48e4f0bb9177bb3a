"""Streamlit entry point of the web app: page setup, sidebar, and the pages.

Run it with ``python -m webapp`` (see ``webapp/__main__.py`` for the flags), or
``streamlit run webapp/app.py`` with the same flags.
"""

import sys
from pathlib import Path

import streamlit as st

# `streamlit run webapp/app.py` puts webapp/ on sys.path, not the repository root, and the
# app's modules import each other as the `webapp` package.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from webapp import icons  # noqa: E402
from webapp.views.common import render_sidebar, settings_or_stop  # noqa: E402

st.set_page_config(page_title="YOLO detection", page_icon=icons.APP, layout="wide")
render_sidebar(settings_or_stop())
st.navigation(
    [
        st.Page("app_pages/detect.py", title="Detect", icon=icons.DETECT, default=True),
        st.Page("app_pages/review.py", title="Review", icon=icons.REVIEW),
        st.Page("app_pages/models.py", title="Models", icon=icons.MODELS),
    ]
).run()
