"""The baseline page for bench_app.py: one `st.write`, what any Streamlit page costs at least."""

import streamlit as st

st.write("citypath")
