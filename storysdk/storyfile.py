"""Story files (being written)."""
class StoryFile:  # placeholder
    pass
def load_story_file(path):  # placeholder
    raise NotImplementedError
