"""Content adaptation: every handset gets a message it can show, within its limits."""
