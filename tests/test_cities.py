import pandas as pd
import pytest

from citypath import cities


def test_us_table_has_every_column_and_unique_labels():
    table = cities.us_cities(500)
    assert list(table.columns) == cities.COLUMNS
    assert table["label"].is_unique
    assert (table["population"] >= 500).all()
    assert table["lat"].between(15, 72).all() and table["lon"].between(-180, -60).all()
    # Largest first, so city ids follow population.
    assert table["population"].is_monotonic_decreasing


def test_duplicate_names_in_a_state_are_told_apart_deterministically():
    table = cities.us_cities(500)
    plain = table["name"] + ", " + table["state"]
    repeated = table[plain.duplicated(keep=False)]
    assert len(repeated) > 100  # Springfields, Franklins, ...
    # The most populous keeps the plain label; the others say where they are.
    for _, group in repeated.groupby(plain[plain.duplicated(keep=False)]):
        assert group.iloc[0]["label"] == group.iloc[0]["name"] + ", " + group.iloc[0]["state"]
        assert all("(near " in label or "#" in label for label in group["label"].iloc[1:])


def test_labels_do_not_depend_on_the_population_filter():
    big = cities.us_cities(5000).set_index("geonameid")["label"]
    all_ = cities.us_cities(500).set_index("geonameid")["label"]
    pd.testing.assert_series_equal(big, all_.loc[big.index])


def test_population_below_the_source_minimum_is_refused():
    with pytest.raises(ValueError, match="500"):
        cities.us_cities(100)


def test_outside_reasons_name_the_place():
    assert "Alaska" in cities.outside_reason("AK", None)
    assert "selected states" in cities.outside_reason("TX", ("RI",))
    assert cities.outside_reason("RI", ("RI",)) is None
    assert cities.outside_reason("DC", None) is None


def test_source_counts_add_up_to_the_city_table():
    counts = cities.source_counts()
    assert counts["us_records"] - counts["us_without_state"] - counts["us_below_min_population"] == counts["us_cities"]
    assert counts["us_cities"] == len(cities.us_cities(500)) and counts["records"] > counts["us_records"]
    assert cities.source_counts(1000)["us_below_min_population"] > counts["us_below_min_population"]
