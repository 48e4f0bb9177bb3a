"""Page scripts for ``st.navigation``: each one only calls its view's ``render()``."""
