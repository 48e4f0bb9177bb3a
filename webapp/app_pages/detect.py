"""Detect page script (``st.navigation`` runs it; the logic lives in ``webapp.views.detect``)."""

from webapp.views.detect import render

render()
