"""Getting and deciding: fetch, schedule, decide what changed, and apply it."""
