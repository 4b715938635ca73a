"""The view room: how replays are shown, with no Streamlit session in it.

`maplayers` (pydeck layers) over `basemap` (offline state outlines), `export` (PNG, GIF, GeoJSON, CSV),
`player` (what the browser-side player is sent, and the component), and `present` (metric cards, compute
text and equal-compute budgets: the one way a number reads, for the app, the exports and the CLI). The core
never imports from here.
"""
