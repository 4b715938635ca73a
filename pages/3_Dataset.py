"""The city graph: counts, radius, components, degree and path-length distributions, city density."""

from __future__ import annotations

import altair as alt
import pydeck as pdk
import streamlit as st

from citypath.app import resources, tables
from citypath.view import maplayers

st.set_page_config(page_title="citypath · dataset", page_icon="🗺️", layout="wide")
g = resources.graph()


@st.cache_data(show_spinner="Sampling optimal paths…")
def lengths(fingerprint: str):
    return tables.path_length_sample(g, sources=12)


st.title("The city graph")
summary = g.summary()
st.caption(f"Every GeoNames place of {summary['min_population']:,}+ people in {summary['states']}, "
           f"joined when within {g.radius_km:g} km; only the largest connected component is kept.")
cols = st.columns(5)
cols[0].metric("Cities", f"{summary['cities']:,}")
cols[1].metric("Edges", f"{summary['edges']:,}")
cols[2].metric("Radius", f"{g.radius_km:g} km")
cols[3].metric("Mean degree", f"{summary['mean_degree']:.0f}")
n_left_out, why_left_out = tables.left_out(g)
cols[4].metric("Left out", f"{n_left_out:,}",
               help=f"{summary['outside_contiguous_us']:,} places outside the contiguous US plus "
                    f"{summary['dropped_disconnected']:,} beyond the radius from the rest (see below).")
st.caption(why_left_out)

c1, c2 = st.columns(2)
deg = tables.degree_counts(g)
c1.altair_chart(alt.Chart(deg, title="neighbours per city").mark_bar()
                .encode(x=alt.X("degree_from:Q", bin="binned", title="degree"), x2="degree_to:Q",
                        y=alt.Y("cities:Q", title="cities")).properties(height=260), width="stretch")
comp = tables.component_sizes(g)
c2.markdown("**Components** (the main one is kept; smaller groups are beyond the radius from it)")
c2.dataframe(comp, hide_index=True, width="stretch", height=260)

sample = lengths(g.fingerprint)
c3, c4 = st.columns(2)
c3.altair_chart(alt.Chart(sample, title="optimal path length (km), 12 random sources to every city")
                .mark_bar().encode(x=alt.X("km:Q", bin=alt.Bin(maxbins=50)), y=alt.Y("count()", title="pairs"))
                .properties(height=240),
                width="stretch")
c4.altair_chart(alt.Chart(sample, title="optimal path length (hops)")
                .mark_bar().encode(x=alt.X("hops:Q", bin=alt.Bin(maxbins=50)), y=alt.Y("count()", title="pairs"))
                .properties(height=240),
                width="stretch")

st.markdown("**Where the cities are** (hexagons of ~25 km; colour: quantile of the number of cities in the cell)")
urls = resources.static_urls(g, g.fingerprint)
data = urls["cities"] if urls else resources.city_records(g, g.fingerprint)
hexes = pdk.Layer("HexagonLayer", data, id="density", get_position="p", radius=25000, coverage=0.9,
                  color_range=[[255, 255, 204], [161, 218, 180], [65, 182, 196], [44, 127, 184], [37, 52, 148],
                               [8, 29, 88]], color_scale_type='"quantile"', opacity=0.85, pickable=False)
view = maplayers.fit_view(g.lon, g.lat, width_px=1100, height_px=520, padding=0.05)
st.pydeck_chart(maplayers.CompactDeck(layers=[*maplayers.state_layers(urls["states"] if urls else None), hexes],
                                      initial_view_state=view, map_provider=None), height=520)
