"""The Streamlit web app: a thin UI over the gateway's public HTTP contract.

It imports nothing of the project outside this folder but ``gateway_client`` (the shared
client of the gateway's contract, httpx only): every piece of data comes from the gateway over
HTTP (see ``docs/api-contract.md``), so the app can run on any machine that reaches the
gateway. Run it with ``python -m webapp``.
"""
