"""The uplink client: single-flight origin fetches with Range resume, a rate limit and byte
accounting; origin errors are passed on honestly and never stored as content."""
