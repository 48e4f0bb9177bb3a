"""Review page script (``st.navigation`` runs it; the logic lives in ``webapp.views.review``)."""

from webapp.views.review import render

render()
