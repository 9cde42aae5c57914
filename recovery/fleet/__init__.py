"""The fleet store: each host's events shipped to PostgreSQL (`ship`), and the views over every
host (`views`). The local SQLite store stays the source of truth: recovery never waits for this."""
