"""Client-side checks behind ``modelpack verify`` and ``modelpack gate``: a pack folder offline, or a
registry's pack re-checked over its API (every byte re-hashed here)."""
