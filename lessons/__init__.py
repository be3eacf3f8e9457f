"""Your exercises. Each ``lNN_*.py`` file has TODOs; ``make check`` grades them."""
