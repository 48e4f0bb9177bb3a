"""Models page script (``st.navigation`` runs it; the logic lives in ``webapp.views.models``)."""

from webapp.views.models import render

render()
