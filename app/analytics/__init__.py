"""Pure analytics over keystroke arrays: layouts, metrics and aggregates."""
