"""Photon ML's GAME input as the tests write it: the feature record of a bag (``{name, term,
value}``, a nullable ``term`` as Photon's own files have it)."""

FEATURE = {
    "type": "record",
    "name": "Feature",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "term", "type": ["null", "string"]},
        {"name": "value", "type": "double"},
    ],
}
