"""Seeding a demonstration city: the Andorra demo's crews, depots, open work and a year of history."""
