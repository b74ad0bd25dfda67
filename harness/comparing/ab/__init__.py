"""``bench ab``: a baseline and a candidate measured in alternating rounds on one machine."""
