"""Network drivers behind a CNI-shaped contract (design.md §4)."""
