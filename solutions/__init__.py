"""Reference solutions. Same module names as ``lessons/``; copy one over to see it solved."""
