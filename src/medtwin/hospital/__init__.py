"""Hospital operations twin: a hospital as data (units, rosters, ESI priorities, routing, lengths of stay,
arrivals per hour of week), a discrete-event engine validated against Erlang B/C and SimPy/Ciw, replications
with common random numbers fanned out on Dask, forecasts from a given census and what-if scenarios.

The core (this package) imports no web framework and no store: interfaces (``cli/hospital.py``,
``api/routers/hospital.py``) are thin over it. Patient names never enter it: patients are indices.
"""
