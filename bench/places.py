"""How often places are named right: coordinates of known cities, points a few km off their
centres, towns beside big cities, and points at sea, against what the gazetteer says.

    python -m bench.places           # 75 city centres, 39 also 3 km off four ways, 15 towns, 8 at sea
    python -m bench.places --tiny    # a few of each: checks the script runs

A point is placed right when the city is the one listed (a few have two accepted names:
"Delhi" and "New Delhi", GeoNames' "Ulan Bator") and the country code matches; the country
alone is counted too, since `place=Portugal` rests on it. Points at sea are right when they
get no place. The same points go through reverse_geocode's own lookup (the nearest place,
measured in degrees), plain and restricted to places of 100,000 people, for comparison.
The coordinates are the usual ones for each city centre (Wikipedia's, to four decimals).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import time
import unicodedata
from pathlib import Path
from typing import Any

from bench.common import markdown_table, write_results
from clipseek.photo.places import Place, gazetteer

# A point to place: the accepted city names and the country code (None: no place), where it is.
Case = tuple[tuple[str, ...] | None, str | None, float, float]
# Cities of half a million people or more, whose centres are also tried 3 km off.
BIG_CITIES: list[Case] = [
    (("Lisbon",), "PT", 38.7223, -9.1393), (("Tokyo",), "JP", 35.6762, 139.6503),
    (("Delhi", "New Delhi"), "IN", 28.6139, 77.2090), (("Shanghai",), "CN", 31.2304, 121.4737),
    (("São Paulo",), "BR", -23.5505, -46.6333), (("Mexico City",), "MX", 19.4326, -99.1332),
    (("Cairo",), "EG", 30.0444, 31.2357), (("Mumbai",), "IN", 19.0760, 72.8777),
    (("Beijing",), "CN", 39.9042, 116.4074), (("Dhaka",), "BD", 23.8103, 90.4125),
    (("Osaka",), "JP", 34.6937, 135.5023), (("New York City",), "US", 40.7128, -74.0060),
    (("Karachi",), "PK", 24.8607, 67.0011), (("Buenos Aires",), "AR", -34.6037, -58.3816),
    (("Istanbul",), "TR", 41.0082, 28.9784), (("Kolkata",), "IN", 22.5726, 88.3639),
    (("Manila",), "PH", 14.5995, 120.9842), (("Lagos",), "NG", 6.5244, 3.3792),
    (("Rio de Janeiro",), "BR", -22.9068, -43.1729), (("Moscow",), "RU", 55.7558, 37.6173),
    (("Paris",), "FR", 48.8566, 2.3522), (("London",), "GB", 51.5074, -0.1278),
    (("Bangkok",), "TH", 13.7563, 100.5018), (("Jakarta",), "ID", -6.2088, 106.8456),
    (("Lima",), "PE", -12.0464, -77.0428), (("Seoul",), "KR", 37.5665, 126.9780),
    (("Bogotá",), "CO", 4.7110, -74.0721), (("Tehran",), "IR", 35.6892, 51.3890),
    (("Hong Kong",), "HK", 22.2793, 114.1628), (("Madrid",), "ES", 40.4168, -3.7038),
    (("Berlin",), "DE", 52.5200, 13.4050), (("Los Angeles",), "US", 34.0522, -118.2437),
    (("Chicago",), "US", 41.8781, -87.6298), (("Toronto",), "CA", 43.6532, -79.3832),
    (("Sydney",), "AU", -33.8688, 151.2093), (("Melbourne",), "AU", -37.8136, 144.9631),
    (("Johannesburg",), "ZA", -26.2041, 28.0473), (("Nairobi",), "KE", -1.2921, 36.8219),
    (("Rome",), "IT", 41.9028, 12.4964),
]
CITIES: list[Case] = [
    (("Singapore",), "SG", 1.2903, 103.8519), (("Reykjavík",), "IS", 64.1466, -21.9426),
    (("Oslo",), "NO", 59.9139, 10.7522), (("Helsinki",), "FI", 60.1699, 24.9384),
    (("Stockholm",), "SE", 59.3293, 18.0686), (("Copenhagen",), "DK", 55.6761, 12.5683),
    (("Dublin",), "IE", 53.3498, -6.2603), (("Amsterdam",), "NL", 52.3676, 4.9041),
    (("Vienna",), "AT", 48.2082, 16.3738), (("Prague",), "CZ", 50.0755, 14.4378),
    (("Warsaw",), "PL", 52.2297, 21.0122), (("Athens",), "GR", 37.9838, 23.7275),
    (("Porto",), "PT", 41.1579, -8.6291), (("Edinburgh",), "GB", 55.9533, -3.1883),
    (("Vancouver",), "CA", 49.2827, -123.1207), (("Anchorage",), "US", 61.2181, -149.9003),
    (("Honolulu",), "US", 21.3069, -157.8583), (("Auckland",), "NZ", -36.8485, 174.7633),
    (("Wellington",), "NZ", -41.2865, 174.7762), (("Cape Town",), "ZA", -33.9249, 18.4241),
    (("Marrakesh",), "MA", 31.6295, -7.9811), (("Hanoi",), "VN", 21.0278, 105.8342),
    (("Ulaanbaatar", "Ulan Bator"), "MN", 47.8864, 106.9057), (("Quito",), "EC", -0.1807, -78.4678),
    (("La Paz",), "BO", -16.4897, -68.1193), (("Montevideo",), "UY", -34.9011, -56.1645),
    (("Havana",), "CU", 23.1136, -82.3666), (("Kathmandu",), "NP", 27.7172, 85.3240),
    (("Kyiv", "Kiev"), "UA", 50.4501, 30.5234), (("Dubai",), "AE", 25.2048, 55.2708),
    (("Tel Aviv",), "IL", 32.0853, 34.7818), (("Florence",), "IT", 43.7696, 11.2558),
    (("Kyoto",), "JP", 35.0116, 135.7681), (("Barcelona",), "ES", 41.3851, 2.1734),
    (("Munich",), "DE", 48.1351, 11.5820), (("Zürich",), "CH", 47.3769, 8.5417),
]
# Towns of their own beside a big city: the town is the place, not the city.
TOWNS: list[Case] = [
    (("Amadora",), "PT", 38.7538, -9.2308), (("Cascais",), "PT", 38.6979, -9.4215),
    (("Sintra",), "PT", 38.8029, -9.3817), (("Versailles",), "FR", 48.8049, 2.1204),
    (("Boulogne-Billancourt",), "FR", 48.8397, 2.2399), (("Potsdam",), "DE", 52.3906, 13.0645),
    (("Yonkers",), "US", 40.9312, -73.8988), (("Pasadena",), "US", 34.1478, -118.1445),
    (("Oakland",), "US", 37.8044, -122.2712), (("Cambridge",), "US", 42.3736, -71.1097),
    (("Kawasaki",), "JP", 35.5308, 139.7029), (("Saitama",), "JP", 35.8617, 139.6455),
    (("Parramatta",), "AU", -33.8150, 151.0011), (("Espoo",), "FI", 60.2055, 24.6559),
    (("Incheon",), "KR", 37.4563, 126.7052),
]
# Nowhere: the (0, 0) of a phone without a fix, open oceans, Antarctica's interior.
NOWHERE: list[tuple[float, float]] = [(0.0, 0.0), (30.0, -40.0), (0.0, -140.0), (-40.0, 80.0),
                                      (-82.0, 30.0), (45.0, -150.0), (20.0, -30.0), (-60.0, -120.0)]
JITTER_KM = 3.0


def _folded(name: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", name.casefold()) if not unicodedata.combining(c))


def _moved(lat: float, lon: float, km: float, bearing_deg: float) -> tuple[float, float]:
    """The point `km` away from (lat, lon) in a compass direction, on a sphere."""
    radius = 6371.0
    d, b = km / radius, math.radians(bearing_deg)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


def cases(tiny: bool) -> dict[str, list[Case]]:
    """The points by group, each with the accepted city names and country code (None: no place)."""
    big, other, towns, nowhere = BIG_CITIES, CITIES, TOWNS, NOWHERE
    if tiny:
        big, other, towns, nowhere = big[:3], other[:3], towns[:2], nowhere[:2]
    jittered: list[Case] = [(names, code, *_moved(lat, lon, JITTER_KM, bearing))
                            for names, code, lat, lon in big for bearing in (0, 90, 180, 270)]
    return {"city centres": big + other, f"{JITTER_KM:g} km off a big city's centre": jittered,
            "towns beside a big city": towns,
            "at sea, Antarctica, (0, 0)": [(None, None, la, lo) for la, lo in nowhere]}


def judged(place: tuple[str, str] | None, names: tuple[str, ...] | None,
           code: str | None) -> tuple[bool, bool]:
    """(the city is right, the country is right) for a lookup's (city, country code)."""
    if names is None:
        return place is None, place is None
    if place is None:
        return False, False
    city_right = _folded(place[0]) in {_folded(n) for n in names} and place[1] == code
    return city_right, place[1] == code


def clipseek_lookup(lat: float, lon: float) -> tuple[str, str] | None:
    """ClipSeek's place, as (city, country code)."""
    found: Place | None = gazetteer().place_at(lat, lon)
    return None if found is None else (found.city, found.country_code)


def package_lookup(min_population: int) -> Any:
    """reverse_geocode's own answer: the nearest place (of at least `min_population` people)."""
    import reverse_geocode  # type: ignore[import-untyped]

    def lookup(lat: float, lon: float) -> tuple[str, str] | None:
        found = reverse_geocode.get((lat, lon), min_population=min_population)
        return (found["city"], found["country_code"])

    return lookup


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    """Measure and write bench/results/places.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    groups = cases(args.tiny)
    gc.collect()
    before = _rss_mb()
    started = time.perf_counter()
    gazetteer()
    load_s = time.perf_counter() - started
    gc.collect()
    memory_mb = _rss_mb() - before
    approaches = {"ClipSeek": clipseek_lookup, "reverse_geocode, nearest place": package_lookup(0),
                  "reverse_geocode, nearest of 100,000 people": package_lookup(100_000)}
    results: dict[str, Any] = {"load_s": round(load_s, 3), "memory_mb": round(memory_mb, 1),
                               "jitter_km": JITTER_KM, "approaches": {}}
    wrong: list[str] = []
    for name, lookup in approaches.items():
        per_group: dict[str, dict[str, Any]] = {}
        timings: list[float] = []
        for group, points in groups.items():
            city = country = 0
            for names, code, lat, lon in points:
                started = time.perf_counter()
                place = lookup(lat, lon)
                timings.append((time.perf_counter() - started) * 1e6)
                city_right, country_right = judged(place, names, code)
                city, country = city + city_right, country + country_right
                if name == "ClipSeek" and not city_right:
                    wrong.append(f"{group}: ({lat:.4f}, {lon:.4f}) expected "
                                 f"{'/'.join(names) if names else 'no place'} {code or ''}, got {place}")
            per_group[group] = {"points": len(points), "city_right": city, "country_right": country}
        total = sum(g["points"] for g in per_group.values())
        results["approaches"][name] = {
            "groups": per_group, "points": total,
            "city_right_share": round(sum(g["city_right"] for g in per_group.values()) / total, 4),
            "country_right_share": round(sum(g["country_right"] for g in per_group.values()) / total, 4),
            "lookup_us_p50": round(statistics.median(timings[1:] or timings), 1)}
    results["clipseek_wrong"] = wrong
    rows = []
    for name, found in results["approaches"].items():
        cells = [f"{g['city_right']}/{g['points']}" for g in found["groups"].values()]
        rows.append([name, *cells, f"**{found['city_right_share']:.1%}**",
                     f"{found['country_right_share']:.1%}", found["lookup_us_p50"]])
    headers = ["approach", *groups, "city right, all", "country right, all", "µs per lookup (p50)"]
    md = (markdown_table(headers, rows)
          + f"\n\nClipSeek's gazetteer: read in {results['load_s']} s, "
          f"{results['memory_mb']} MB more for the process.\n\nClipSeek's misses:\n\n"
          + ("\n".join(f"- {w}" for w in wrong) or "- none"))
    write_results("places-tiny" if args.tiny else "places", {"results": results}, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
