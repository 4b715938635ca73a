"""Great-circle geometry on the mean Earth sphere.

Every distance in citypath is a haversine distance in kilometres on a sphere of
radius 6371.0088 km (the IUGG mean Earth radius), so the graph, the metrics and
the map agree to the last bit on whether two cities are within the radius.
`geo_features` is the one description of where a city lies relative to a query's source and
target that the looped, memory and memsearch families feed their networks.
"""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0088
N_GEO = 8   # features per city of `geo_features`


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km between points given in degrees (broadcasts)."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def unit_vectors(lat, lon) -> np.ndarray:
    """Points on the unit sphere, shape (n, 3), for chord-distance neighbour search."""
    lat, lon = np.radians(np.asarray(lat, dtype=np.float64)), np.radians(np.asarray(lon, dtype=np.float64))
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def chord_for_km(distance_km: float) -> float:
    """Chord length on the unit sphere of a great-circle arc of `distance_km`."""
    return 2.0 * np.sin(distance_km / (2.0 * EARTH_RADIUS_KM))


def midpoint(lat1: float, lon1: float, lat2: float, lon2: float) -> tuple[float, float]:
    """Great-circle midpoint of two points, in degrees."""
    v = unit_vectors([lat1, lat2], [lon1, lon2]).sum(axis=0)
    v /= np.linalg.norm(v)
    return float(np.degrees(np.arcsin(v[2]))), float(np.degrees(np.arctan2(v[1], v[0])))


def project_aeqd_km(lat, lon, lat0, lon0) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal equidistant projection about (lat0, lon0), in km (broadcasts).

    Distances from the centre are exact; elsewhere the scale error is c/sin(c) - 1 for
    angular distance c from the centre, under 2% within 2,000 km: good enough to measure
    how far apart two routes across the contiguous US are in km with planar geometry.
    """
    phi, lam = np.radians(np.asarray(lat, dtype=np.float64)), np.radians(np.asarray(lon, dtype=np.float64))
    phi0, lam0 = np.radians(np.asarray(lat0, dtype=np.float64)), np.radians(np.asarray(lon0, dtype=np.float64))
    cos_c = np.sin(phi0) * np.sin(phi) + np.cos(phi0) * np.cos(phi) * np.cos(lam - lam0)
    c = np.arccos(np.clip(cos_c, -1.0, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(c < 1e-12, 1.0, c / np.sin(c))
    x = EARTH_RADIUS_KM * k * np.cos(phi) * np.sin(lam - lam0)
    y = EARTH_RADIUS_KM * k * (np.cos(phi0) * np.sin(phi) - np.sin(phi0) * np.cos(phi) * np.cos(lam - lam0))
    return x, y


def geo_features(dt: np.ndarray, ds: np.ndarray, d_st: float, is_src: np.ndarray, is_dst: np.ndarray) -> np.ndarray:
    """(n, N_GEO) features from straight distances (radii) to target and source: scale-free positions
    along and across the source -> target axis (law of cosines), log distances, and the two flags."""
    scale = d_st + 1.0
    along = (ds ** 2 - dt ** 2 + d_st ** 2) / (2 * d_st) if d_st > 0 else np.zeros_like(ds)
    across = np.sqrt(np.maximum(ds ** 2 - along ** 2, 0.0))
    return np.stack([dt / scale, ds / scale, along / scale, across / scale, np.log1p(dt), np.log1p(ds),
                     is_src.astype(np.float64), is_dst.astype(np.float64)], axis=1)
