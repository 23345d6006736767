"""Pipeline (being written)."""
class Pipeline:  # placeholder, replaced shortly
    pass
