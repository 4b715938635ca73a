"""The app room: the Streamlit app over the core and the view, laid out by `app.py` and `pages/`.

`url` (the shareable view and its link), `picks` (choosing a pair), `resources` (what a process loads
once), `replays` (a view's replays and the player's arguments), `state` (the session's widget keys and the
URL sync), `callbacks`, `downloads`, `turns` (one run at a time, the first visitor first), `launch` (one
process, warm before it listens), `serve` (processes behind HAProxy) and `tables` (the pages' tables). The
core never imports from here.
"""
