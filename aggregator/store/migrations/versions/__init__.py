"""The revisions, oldest first by their numbers (``--rev-id``); never edit a released one."""
