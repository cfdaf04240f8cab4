"""Training a restorer for one's own material (see :mod:`remaster.train.loop`)."""
