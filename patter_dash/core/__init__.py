"""What happens to events: the pipeline (queue, event thread), the in-memory store, running aggregates and the live hub."""
